// Spans for work items the calibrator publishes without statistics (RTN with full-precision
// propagation, modules outside the routed experts): the same layer → expert → calibrate tree as
// calibrated experts, so every quantize span has a calibrate parent whatever the algorithm.
import { type QuantTarget, telemetry as T } from "@moeq/runtime";

export function publishUncalibrated(
  layer: number,
  targets: readonly QuantTarget[],
  publish: (t: QuantTarget) => Promise<unknown>,
): Promise<unknown> {
  const byExpert = new Map<number, QuantTarget[]>();
  for (const t of targets) byExpert.set(t.expert, [...(byExpert.get(t.expert) ?? []), t]);
  return Promise.all(
    [...byExpert].map(([expert, ts]) =>
      T.expertSpan(layer, expert, () =>
        Promise.all(
          ts.map((t) =>
            T.projectionSpan(
              "calibrate",
              { layer, expert, proj: t.proj, algorithm: "rtn", tokensRouted: 0, weightMass: 0, bytes: 0 },
              () => publish(t),
            ),
          ),
        ),
      ),
    ),
  );
}

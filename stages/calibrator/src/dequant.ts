// --propagate quantized: the layer's weights as the quantizer left them (scale·(code − zero) for
// int schemes; the quantizer's own `dequant` output for float schemes, whose modules are always
// whole), overlaid on the full-precision source, so the next layer sees what the packed model computes.
// Matrices cut out of fused tensors go back into f32 copies of those tensors (refuseModules).
import type { EventOf } from "@moeq/contracts";
import { type ModelSpec, overlaySource, refuseModules, type WeightSource } from "@moeq/models";
import {
  dequantizeInt,
  isFloatScheme,
  packedModules,
  type QuantTarget,
  readIntOutputs,
  type StageContext,
  StageError,
  targetKey,
} from "@moeq/runtime";
import { f32Tensor, type Tensor } from "@moeq/tensor";

export function dequantOverlay(
  ctx: StageContext,
  spec: ModelSpec,
  base: WeightSource,
  targets: readonly QuantTarget[],
  events: readonly EventOf<"ExpertQuantized">[],
): WeightSource {
  const byKey = new Map(events.map((e) => [targetKey(e.payload), e]));
  const outputs = (t: QuantTarget) => {
    const ev = byKey.get(targetKey(t));
    if (!ev) throw new StageError({ stage: ctx.stage, message: `no ExpertQuantized for ${targetKey(t)}` });
    return readIntOutputs(ctx.reader, ev, t);
  };
  const overrides = new Map<string, Tensor>();
  const fusedMatrices = new Map<string, Float32Array>();
  const modules = isFloatScheme(ctx.options.scheme)
    ? targets.map((t) => {
        const ev = byKey.get(targetKey(t));
        if (!ev?.payload.outputs.dequant)
          throw new StageError({
            stage: ctx.stage,
            message: `no dequantized output in ExpertQuantized for ${targetKey(t)}`,
          });
        const w = ctx.reader.f32(ev.payload.outputs.dequant, `ExpertQuantized ${targetKey(t)} dequant`);
        return { module: t.packed.module, rows: t.rows, cols: t.cols, targets: [t], w };
      })
    : packedModules(targets, outputs).map((m) => ({ ...m, w: dequantizeInt(m.q, m.rows, m.cols) }));
  for (const m of modules) {
    const w = m.w;
    if (m.targets.some((t) => t.extracted)) fusedMatrices.set(m.module, w);
    else overrides.set(m.targets[0].tensor, f32Tensor(w, [m.rows, m.cols]));
  }
  if (fusedMatrices.size > 0) {
    const roles = targets.filter((t) => t.extracted).map((t) => t.role);
    for (const [name, t] of refuseModules(spec, roles, base, (mod) => fusedMatrices.get(mod))) overrides.set(name, t);
  }
  return overlaySource(base, overrides);
}

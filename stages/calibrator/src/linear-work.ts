// Calibrated work for the linears outside the routed experts (attention / MLA / DeltaNet, dense
// MLP, shared expert): every token weighs 1, the statistics come from the inputs the engine
// applied (InputStatistics through the linear hook), one Hessian file per distinct input.
import { join } from "node:path";
import type { TensorDescriptor } from "@moeq/contracts";
import { type QuantTarget, type StageContext, StageError, telemetry as tracing, writeTensorFile } from "@moeq/runtime";
import type { InputStatistics } from "./input-stats.ts";
import { EMPTY_HESSIAN, publishWork } from "./work.ts";

/** ExpertCalibrated + a work item per target: GPTQ on its Hessian, or RTN (ranges only). */
export async function publishLinears(
  ctx: StageContext,
  L: number,
  targets: readonly QuantTarget[],
  stats: InputStatistics,
  descs: ReadonlyMap<string, TensorDescriptor>,
  gptq: boolean,
): Promise<void> {
  const calibDir = join(ctx.paths.tensors, "calib");
  const files = new Map<string, TensorDescriptor>();
  const pending: Promise<unknown>[] = [];
  await tracing.expertSpan(L, 0, async () => {
    for (const t of targets) {
      const s = stats.stats(t);
      if (!s || s.tokens === 0)
        throw new StageError({
          stage: ctx.stage,
          message: `layer ${L}: the forward never applied ${t.tensor} (${t.proj}), no statistics for it`,
          permanent: true,
        });
      let hessian = EMPTY_HESSIAN;
      if (gptq) {
        hessian =
          files.get(s.group) ??
          writeTensorFile(calibDir, `L${L}.${t.proj}.hessian`, "f32", [s.cols, s.cols], s.hessian);
        files.set(s.group, hessian);
      }
      const algorithm = gptq ? "gptq" : "rtn";
      const bytes = gptq ? s.cols * s.cols * 4 : 0;
      const work = {
        layer: L,
        expert: t.expert,
        proj: t.proj,
        tokensRouted: s.tokens,
        weightMass: s.weightMass,
        bytes,
        algorithm,
      };
      const published = await tracing.projectionSpan("calibrate", work, async () => {
        await ctx.emit({
          type: "ExpertCalibrated",
          payload: {
            layer: L,
            expert: t.expert,
            proj: t.proj,
            hessian,
            tokens: s.tokens,
            weightMass: s.weightMass,
            inputAbsmax: s.absmax,
          },
        });
        return { done: publishWork(ctx, t, descs.get(t.tensor), hessian, algorithm, s.weightMass) };
      });
      pending.push(published.done);
    }
  });
  await Promise.all(pending);
}

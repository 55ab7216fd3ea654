// Quantize work items: the weight (cut out of its fused tensor when it shares one), the Hessian
// (empty for RTN), the algorithm actually used and the scheme options.
import { join } from "node:path";
import { type TensorDescriptor, workId } from "@moeq/contracts";
import { type QuantTarget, type StageContext, StageError, targetWeight } from "@moeq/runtime";

// fused tensors of the current layer, mapped once for all the matrices cut out of them
export const fusedCache = new Map<string, Float32Array | Uint16Array | Uint8Array>();

export const EMPTY_HESSIAN: TensorDescriptor = {
  dtype: "f32",
  shape: [0],
  loc: { kind: "inline", data: new Uint8Array(0) },
};

function quantOptions(ctx: StageContext, t: QuantTarget, weightMass: number, fallback?: string) {
  const o = ctx.options;
  return {
    bits: o.bits,
    groupSize: o.groupSize,
    symmetric: o.symmetric,
    actOrder: o.actOrder,
    damp: o.damp,
    hessianWeight: weightMass,
    rows: t.rows,
    cols: t.cols,
    tensor: t.tensor,
    ...(fallback ? { fallback } : {}),
  };
}

export async function publishWork(
  ctx: StageContext,
  t: QuantTarget,
  source: TensorDescriptor | undefined,
  hessian: TensorDescriptor,
  algorithm: "gptq" | "rtn",
  weightMass: number,
  fallback?: string,
) {
  const weight = targetWeight(ctx.reader, join(ctx.paths.tensors, "weights"), t, source, fusedCache);
  if (!weight)
    throw new StageError({
      stage: ctx.stage,
      message: `tensor ${t.tensor} was not in LayerLoaded(${t.layer})`,
      permanent: true,
    });
  const id = workId({ runId: ctx.runId, stage: "quantize", layer: t.layer, expert: t.expert, proj: t.proj });
  await ctx.queues.publish("quantize", {
    id,
    runId: ctx.runId,
    kind: "quantize-expert",
    payload: {
      layer: t.layer,
      expert: t.expert,
      proj: t.proj,
      weight,
      hessian,
      algorithm,
      options: quantOptions(ctx, t, weightMass, fallback),
    },
  });
}

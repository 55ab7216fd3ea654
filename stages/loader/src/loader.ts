// The loader opens and validates the checkpoint, then publishes the model's shape (ModelOpened)
// and, per layer, `file` descriptors of its tensors (LayerLoaded): consumers map the shard
// ranges themselves, nothing is copied. Layer 0 also carries the model-level tensors
// (embeddings, final norm, lm_head) so a consumer needs no other source.
import { isAbsolute, join } from "node:path";
import type { TensorDescriptor } from "@moeq/contracts";
import { loadModel } from "@moeq/models";
import { fromSafetensorsDtype, type StageContext } from "@moeq/runtime";
import { telemetry as tracing } from "@moeq/runtime";

// "model.layers.N." in most checkpoints, "transformer.blocks.N." in DBRX
const LAYER = /\.(?:layers|blocks)\.(\d+)\./;

export async function runLoader(ctx: StageContext): Promise<void> {
  const model = loadModel(ctx.modelDir);
  try {
    const { spec, checkpoint } = model;
    const expertsPerLayer = spec.layers.map((l) => (l.mlp.kind === "moe" ? l.mlp.experts.numExperts : 0));
    const moe = spec.layers.find((l) => l.mlp.kind === "moe")?.mlp;
    await ctx.emit({
      type: "ModelOpened",
      payload: {
        arch: spec.modelType,
        layers: spec.layers.length,
        expertsPerLayer,
        topK: moe && moe.kind === "moe" ? moe.routing.topK : 0,
        hiddenSize: spec.hiddenSize,
        dtype: String(model.config.torch_dtype ?? model.config.dtype ?? "bfloat16"),
        config: model.config as Record<string, unknown>,
      },
    });
    const byLayer = new Map<number, Record<string, TensorDescriptor>>();
    for (const name of checkpoint.names()) {
      const m = LAYER.exec(name);
      const layer = m ? Number(m[1]) : 0;
      const e = checkpoint.entry(name);
      const d: TensorDescriptor = {
        dtype: fromSafetensorsDtype(e.dtype),
        shape: [...e.shape],
        loc: {
          kind: "file",
          path: isAbsolute(e.file) ? e.file : join(checkpoint.dir, e.file),
          offset: e.dataOffset,
          bytes: e.byteLength,
        },
      };
      if (!byLayer.has(layer)) byLayer.set(layer, {});
      byLayer.get(layer)![name] = d;
    }
    for (let L = 0; L < spec.layers.length; L++) {
      const tensors = byLayer.get(L) ?? {};
      const bytes = Object.values(tensors).reduce((n, d) => n + (d.loc.kind === "file" ? d.loc.bytes : 0), 0);
      await tracing.layerSpan(L, () => tracing.projectionSpan("load", { layer: L, bytes }, () => ctx.emit({ type: "LayerLoaded", payload: { layer: L, tensors } })));
      ctx.say(`layer ${L}: ${Object.keys(byLayer.get(L) ?? {}).length} tensors`);
      await ctx.pause();
    }
  } finally {
    model.close();
  }
}

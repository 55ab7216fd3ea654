// The loader opens and validates the checkpoint, then publishes the model's shape (ModelOpened)
// and, per layer, `file` descriptors of its tensors (LayerLoaded): consumers map the shard
// ranges themselves, nothing is copied. Layer 0 also carries the model-level tensors
// (embeddings, final norm, lm_head) so a consumer needs no other source. Layers are published
// at most `aheadLayers` ahead of the packer (LayerPacked), which bounds the work dir.
// Checkpoints stored quantized (FP8 128×128 blocks: DeepSeek-V3, Kimi, MiniMax; MXFP4 experts:
// GPT-OSS) are published as the model's logical bf16 tensors: each such tensor is decoded by the
// model's own source (the one the forward pass uses) into the work dir, layer by layer, and its
// scale/block tensors are not published; the packer deletes a layer's decoded files once it has
// packed the layer, so at most ~aheadLayers + 1 layers are decoded on disk at a time. Every consumer — router, calibrator, quantizer, packer —
// then sees a plain bf16 model, and weights left unquantized are written bf16 (a FP8 remnant could
// not be described by the output's quantization_config).
import { existsSync, statSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import type { TensorDescriptor } from "@moeq/contracts";
import { fp8BlockSize, loadModel } from "@moeq/models";
import {
  fromSafetensorsDtype,
  type StageContext,
  StageError,
  telemetry as tracing,
  writeFileAtomic,
} from "@moeq/runtime";

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
    const raw = new Set(checkpoint.names());
    const fp8 = fp8BlockSize(model.config) !== null;
    const derived = (n: string) => !raw.has(n) || (fp8 && n.endsWith(".weight") && raw.has(`${n}_scale_inv`));
    const byLayer = new Map<number, string[]>();
    for (const name of model.source.names()) {
      const m = LAYER.exec(name);
      const layer = m ? Number(m[1]) : 0;
      if (!byLayer.has(layer)) byLayer.set(layer, []);
      byLayer.get(layer)!.push(name);
    }
    const describe = (name: string): TensorDescriptor => {
      if (!derived(name)) {
        const e = checkpoint.entry(name);
        return {
          dtype: fromSafetensorsDtype(e.dtype),
          shape: [...e.shape],
          loc: {
            kind: "file",
            path: isAbsolute(e.file) ? e.file : join(checkpoint.dir, e.file),
            offset: e.dataOffset,
            bytes: e.byteLength,
          },
        };
      }
      const t = model.source.tensor(name);
      const path = join(ctx.paths.tensors, "input-decoded", `${name}.bin`);
      // decoding is deterministic: a restarted loader reuses what an earlier attempt wrote whole
      if (!existsSync(path) || statSync(path).size !== t.data.byteLength) writeFileAtomic(path, t.data);
      return {
        dtype: fromSafetensorsDtype(t.dtype),
        shape: [...t.shape],
        loc: { kind: "file", path, offset: 0, bytes: t.data.byteLength },
      };
    };
    const ahead = aheadLayers(ctx);
    for (let L = 0; L < spec.layers.length; L++) {
      // a restarted loader does not decode again what it already published
      if (ctx.has(`LayerLoaded/${L}`)) continue;
      // Backpressure: layer L is published once layer L − ahead is packed (its artifacts, and
      // its decoded copy of a quantized input, deleted), so the work dir holds a few layers.
      if (L >= ahead) {
        ctx.say(`layer ${L} waits until layer ${L - ahead} is packed`);
        await ctx.until(() => ctx.has(`LayerPacked/${L - ahead}`));
      }
      const tensors: Record<string, TensorDescriptor> = {};
      for (const name of byLayer.get(L) ?? []) tensors[name] = describe(name);
      const bytes = Object.values(tensors).reduce((n, d) => n + (d.loc.kind === "file" ? d.loc.bytes : 0), 0);
      await tracing.layerSpan(L, () =>
        tracing.projectionSpan("load", { layer: L, bytes }, () =>
          ctx.emit({ type: "LayerLoaded", payload: { layer: L, tensors } }),
        ),
      );
      ctx.say(`layer ${L}: ${Object.keys(tensors).length} tensors`);
      await ctx.pause();
    }
  } finally {
    model.close();
  }
}

/** Layers published ahead of the packer (graph option `aheadLayers`, default 2: the calibrator
 *  works on one while the quantizers finish the one before). */
function aheadLayers(ctx: StageContext): number {
  const v = ctx.stageOptions.aheadLayers ?? 2;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1)
    throw new StageError({
      stage: ctx.stage,
      message: `loader option aheadLayers: expected an integer ≥ 1, got ${JSON.stringify(v)}`,
      permanent: true,
    });
  return v;
}

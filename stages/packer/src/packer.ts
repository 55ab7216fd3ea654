// The packer writes the checkpoint layer by layer. As soon as a layer is calibrated and all its
// projections are quantized, its part of the output (its quantized modules in the format, plus
// its other tensors; layer 0's part also the model-level tensors) is formatted and written as a
// part file in the work dir, LayerPacked is appended, and the layer's work-dir artifacts are
// deleted (unless --keep-artifacts). When every layer is packed, the parts are copied in order
// into the output shards through the streaming sharded writer (temp dir + rename: a crash never
// leaves a half-written output), each shard is hashed by streaming, and the parts go. Memory
// holds one layer's packed tensors, never the model; shards contain only the quantizer's
// outputs and the source's bytes, so a redone run writes identical bytes.
import { readdirSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, sep } from "node:path";
import type { EventOf, TensorDescriptor } from "@moeq/contracts";
import {
  assembleCheckpoint,
  checkpointPartOf,
  deriveUnquantizedModules,
  type QuantizedModule,
  readCheckpointPart,
  type WrittenCheckpoint,
  writeCheckpointPart,
} from "@moeq/formats";
import { buildSpec, loadModel, type RawConfig } from "@moeq/models";
import {
  dequantizeInt,
  isFloatScheme,
  packedModules,
  type QuantTarget,
  quantTargets,
  readIntOutputs,
  removeLayerArtifacts,
  type StageContext,
  StageError,
  targetKey,
  telemetry as tracing,
  writeFileAtomic,
} from "@moeq/runtime";
import { sha256File } from "@moeq/store";
import type { Tensor } from "@moeq/tensor";
import { floatModules } from "./float-modules.ts";

const partFile = (dir: string, part: number) => join(dir, `part-${part < 0 ? "model" : part}.safetensors`);

export async function runPacker(ctx: StageContext): Promise<void> {
  const o = ctx.options;
  const partsDir = join(ctx.paths.tensors, "packed");
  if (ctx.find("CheckpointPacked")) {
    if (!o.keepArtifacts) rmSync(partsDir, { recursive: true, force: true });
    return;
  }
  const opened = await ctx.waitFor("ModelOpened");
  const { arch, spec } = buildSpec(opened.payload.config as RawConfig, "ModelOpened.config");
  const targets = quantTargets(arch, spec, ctx.options.targets);
  const layers = spec.layers.length;
  // a fused tensor is wholly replaced by its per-expert modules, so it is not passed through
  const quantized = new Set(targets.map((t) => t.tensor));
  // The model's unquantized linears, named in every part's config, from the checkpoint's headers
  // (names and shapes; the loader publishes layers only a few ahead of this stage).
  const unquantizedModules = unquantizedLinears(ctx.modelDir, quantized);
  const partOfTarget = (t: QuantTarget) => checkpointPartOf(`${t.packed.module}.weight`);
  // part −1 (embeddings, final norm, lm_head) is written with layer 0
  const partsOfLayer = (L: number) => (L === 0 ? [-1, 0] : [L]);
  ctx.say(`packing ${targets.length} quantized projections of ${layers} layers as their layers finish`);

  for (let L = 0; L < layers; L++) {
    const parts = partsOfLayer(L);
    if (ctx.has(`LayerPacked/${L}`)) {
      for (const p of parts)
        if (!existsFile(partFile(partsDir, p)))
          throw new StageError({
            stage: ctx.stage,
            message: `${partFile(partsDir, p)} is missing: layer ${L} was packed but its part is gone (the run cannot finish; start it again)`,
            permanent: true,
          });
      if (!o.keepArtifacts) removeArtifacts(ctx, L);
      continue;
    }
    const layerTargets = targets.filter((t) => parts.includes(partOfTarget(t)));
    const keys = layerTargets.map(targetKey);
    const layersOfTargets = new Set([L, ...layerTargets.map((t) => t.layer)]);
    await ctx.until(
      () =>
        Array.from({ length: L + 1 }, (_, l) => ctx.has(`LayerLoaded/${l}`)).every(Boolean) &&
        keys.every((k) => ctx.has(`ExpertQuantized/${k}`)) &&
        [...layersOfTargets].every((l) => ctx.has(`LayerCompleted/${l}`)),
    );
    const loaded = ctx.all("LayerLoaded");
    await ctx.pause();
    let bytes = 0;
    const files: string[] = [];
    for (const p of parts) {
      const file = partFile(partsDir, p);
      await tracing.projectionSpan("pack", { layer: L, algorithm: o.algorithm }, async (span) => {
        const input = {
          modules: layerModules(
            ctx,
            layerTargets.filter((t) => partOfTarget(t) === p),
          ),
          passthrough: passthroughOf(ctx, loaded, quantized, p),
          unquantizedModules,
          modelConfig: opened.payload.config,
        };
        try {
          writeCheckpointPart(file, o.format, input);
        } catch (e) {
          throw packFailure(ctx, file, e);
        }
        tracing.setWork(span, { bytes: statSync(file).size });
      });
      bytes += statSync(file).size;
      files.push(file);
    }
    await ctx.emit({ type: "LayerPacked", payload: { layer: L, parts: files, bytes } });
    const freed = o.keepArtifacts ? 0 : removeArtifacts(ctx, L);
    ctx.say(
      `layer ${L} packed (${(bytes / 2 ** 20).toFixed(1)} MiB)${o.keepArtifacts ? "" : `, ${(freed / 2 ** 20).toFixed(1)} MiB of artifacts deleted`}`,
    );
  }

  const t0 = Date.now();
  // A packer killed mid-write leaves its temp dir beside the output; remove such leftovers.
  const parent = dirname(ctx.outDir);
  for (const f of readdirSync(parent))
    if (f.startsWith(`.${basename(ctx.outDir)}.tmp-`)) rmSync(join(parent, f), { recursive: true, force: true });
  const partFiles = [-1, ...Array.from({ length: layers }, (_, L) => L)].map((p) => partFile(partsDir, p));
  ctx.say(`writing ${ctx.outDir} from ${partFiles.length} parts`);
  let written: WrittenCheckpoint;
  try {
    written = await tracing.projectionSpan("pack", { algorithm: o.algorithm }, (span) => {
      const w = assembleCheckpoint(
        ctx.outDir,
        o.format,
        partFiles.map(readCheckpointPart),
        { modelConfig: opened.payload.config },
        { sourceDir: ctx.modelDir, maxShardBytes: o.maxShardBytes },
      );
      tracing.setWork(span, { bytes: w.shards.reduce((n, f) => n + statSync(join(ctx.outDir, f)).size, 0) });
      return w;
    });
  } catch (e) {
    throw packFailure(ctx, ctx.outDir, e);
  }
  writeFileAtomic(
    join(ctx.paths.report, "pack.json"),
    JSON.stringify(
      {
        format: written.format,
        shards: written.shards,
        ignore: written.ignore,
        notes: written.notes,
        copied: written.copied,
      },
      null,
      2,
    ),
  );
  for (const file of written.shards) {
    const path = join(ctx.outDir, file);
    await ctx.emit({ type: "ShardWritten", payload: { file, bytes: statSync(path).size, sha256: sha256File(path) } });
  }
  await ctx.emit({
    type: "CheckpointPacked",
    payload: { dir: ctx.outDir, format: written.format, shards: written.shards.length },
  });
  if (!o.keepArtifacts) rmSync(partsDir, { recursive: true, force: true });
  ctx.say(`wrote ${written.shards.length} shard(s) to ${ctx.outDir} in ${((Date.now() - t0) / 1000).toFixed(2)} s`);
}

/** The layer's work-dir artifacts, and the files its LayerLoaded points at inside the work dir
 *  (a quantized input's decoded tensors; never the model's own files). */
function removeArtifacts(ctx: StageContext, L: number): number {
  let freed = removeLayerArtifacts(ctx.workDir, L);
  const inside = `${ctx.paths.tensors}${sep}`;
  const ev = ctx.find("LayerLoaded", (e) => e.payload.layer === L);
  for (const d of Object.values(ev?.payload.tensors ?? {}))
    if (d.loc.kind === "file" && d.loc.path.startsWith(inside) && existsFile(d.loc.path)) {
      freed += statSync(d.loc.path).size;
      rmSync(d.loc.path, { force: true });
    }
  return freed;
}

/**
 * 2-D `.weight` tensors of the model that are not quantized (deriveUnquantizedModules), from the
 * checkpoint's headers: a tensor the model's source derives from a quantized input (FP8 blocks,
 * MXFP4 experts) has the shape of its stored weight, or is an expert tensor that is quantized.
 */
function unquantizedLinears(modelDir: string, quantized: ReadonlySet<string>): string[] {
  const model = loadModel(modelDir);
  try {
    const shapes = new Map<string, { shape: readonly number[] }>();
    for (const name of model.source.names()) {
      if (quantized.has(name)) continue;
      if (model.checkpoint.has(name)) shapes.set(name, { shape: model.checkpoint.entry(name).shape });
      else shapes.set(name, { shape: model.source.tensor(name).shape });
    }
    return deriveUnquantizedModules(shapes);
  } finally {
    model.close();
  }
}

const existsFile = (path: string) => {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
};

/**
 * A write that failed: out of disk space is not permanent (free space, `moeq resume` continues
 * from the last packed layer); anything else is.
 */
function packFailure(ctx: StageContext, path: string, e: unknown): StageError {
  const message = (e as Error).message ?? String(e);
  const noSpace = /ENOSPC|no space left/i.test(message) || (e as { code?: string }).code === "ENOSPC";
  return new StageError({
    stage: ctx.stage,
    message: noSpace
      ? `writing ${path}: no space left on the device (ENOSPC); free space and run \`moeq resume ${ctx.workDir}\`: ${message}`
      : `writing ${path}: ${message}`,
    permanent: !noSpace,
  });
}

/** The part's tensors that are not quantized, mapped from the loader's descriptors, in load order. */
function passthroughOf(
  ctx: StageContext,
  loaded: readonly EventOf<"LayerLoaded">[],
  quantized: ReadonlySet<string>,
  part: number,
): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const ev of loaded)
    for (const [name, d] of Object.entries(ev.payload.tensors) as [string, TensorDescriptor][])
      if (!quantized.has(name) && checkpointPartOf(name) === part) out.set(name, ctx.reader.tensor(d, name));
  return out;
}

/** The quantized modules of some targets, from the quantizer's outputs (fused experts stacked back). */
function layerModules(ctx: StageContext, targets: readonly QuantTarget[]): QuantizedModule[] {
  const o = ctx.options;
  const byKey = new Map(
    ctx
      .all("ExpertQuantized", (e) => targets.some((t) => t.layer === e.payload.layer))
      .map((e) => [targetKey(e.payload), e]),
  );
  if (isFloatScheme(o.scheme)) return floatModules(ctx, targets, byKey);
  return packedModules(targets, (t) => readIntOutputs(ctx.reader, byKey.get(targetKey(t))!, t)).map(
    ({ module, rows, cols, q }) => ({
      name: module,
      weight: {
        kind: "int",
        rows,
        cols,
        result: {
          ...q,
          perm: null,
          // computed when the format's check reads it, for one module at a time, never kept
          get dequant() {
            return dequantizeInt(q, rows, cols);
          },
          bits: o.bits,
          groupSize: o.groupSize,
          symmetric: o.symmetric,
        },
      },
    }),
  );
}

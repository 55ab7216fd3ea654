// The packer waits for every layer and every quantized projection, then writes the checkpoint in
// one go through @moeq/formats (compressed-tensors pack-quantized) and the streaming sharded
// writer (temp dir, then rename: a crash never leaves a half-written output). Shards contain
// only the quantizer's outputs and the source's bytes, so a redone run writes identical bytes.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { type QuantizedModule, writeQuantizedCheckpoint } from "@moeq/formats";
import { buildSpec, type RawConfig } from "@moeq/models";
import { dequantizeInt, packedModules, quantTargets, readIntOutputs, type StageContext, StageError, targetKey, writeFileAtomic } from "@moeq/runtime";
import type { Tensor } from "@moeq/tensor";
import { isFloatScheme, telemetry as tracing } from "@moeq/runtime";
import { floatModules } from "./float-modules.ts";

export async function runPacker(ctx: StageContext): Promise<void> {
  if (ctx.find("CheckpointPacked")) return;
  const opened = await ctx.waitFor("ModelOpened");
  const { arch, spec } = buildSpec(opened.payload.config as RawConfig, "ModelOpened.config");
  const targets = quantTargets(arch, spec, ctx.options.targets);
  const keys = targets.map(targetKey);
  const layers = spec.layers.length;
  ctx.say(`waiting for ${keys.length} quantized projections of ${layers} layers`);
  await ctx.until(
    () =>
      keys.every((k) => ctx.has(`ExpertQuantized/${k}`)) &&
      Array.from({ length: layers }, (_, L) => ctx.has(`LayerLoaded/${L}`)).every(Boolean),
  );
  const t0 = Date.now();
  const byKey = new Map(ctx.all("ExpertQuantized").map((e) => [targetKey(e.payload), e]));
  const o = ctx.options;
  // fused experts are written per expert (packTarget's names), row slices stacked back into their module
  const modules: QuantizedModule[] = isFloatScheme(o.scheme) ? floatModules(ctx, targets, byKey) : packedModules(targets, (t) => readIntOutputs(ctx.reader, byKey.get(targetKey(t))!, t)).map(({ module, rows, cols, q }) => ({
    name: module,
    weight: {
      kind: "int",
      rows,
      cols,
      result: { ...q, perm: null, dequant: dequantizeInt(q, rows, cols), bits: o.bits, groupSize: o.groupSize, symmetric: o.symmetric },
    },
  }));
  // a fused tensor is wholly replaced by its per-expert modules, so it is not passed through
  const quantized = new Set(targets.map((t) => t.tensor));
  const passthrough = new Map<string, Tensor>();
  for (const ev of ctx.all("LayerLoaded"))
    for (const [name, d] of Object.entries(ev.payload.tensors)) if (!quantized.has(name)) passthrough.set(name, ctx.reader.tensor(d, name));
  // A packer killed mid-write leaves its temp dir beside the output; remove such leftovers.
  const parent = dirname(ctx.outDir);
  for (const f of readdirSync(parent)) if (f.startsWith(`.${basename(ctx.outDir)}.tmp-`)) rmSync(join(parent, f), { recursive: true, force: true });
  ctx.say(`writing ${modules.length} quantized modules and ${passthrough.size} other tensors`);
  await ctx.pause();
  let written: ReturnType<typeof writeQuantizedCheckpoint>;
  try {
    written = await tracing.projectionSpan("pack", { algorithm: o.algorithm }, (span) => {
      const w = writeQuantizedCheckpoint(ctx.outDir, o.format, { modules, passthrough, modelConfig: opened.payload.config }, { sourceDir: ctx.modelDir, maxShardBytes: o.maxShardBytes });
      tracing.setWork(span, { bytes: w.shards.reduce((n, f) => n + statSync(join(ctx.outDir, f)).size, 0) });
      return w;
    });
  } catch (e) {
    throw new StageError({ stage: ctx.stage, message: `writing ${ctx.outDir}: ${(e as Error).message}`, permanent: true });
  }
  writeFileAtomic(join(ctx.paths.report, "pack.json"), JSON.stringify({ format: written.format, shards: written.shards, ignore: written.ignore, notes: written.notes, copied: written.copied }, null, 2));
  for (const file of written.shards) {
    const path = join(ctx.outDir, file);
    await ctx.emit({ type: "ShardWritten", payload: { file, bytes: statSync(path).size, sha256: createHash("sha256").update(readFileSync(path)).digest("hex") } });
  }
  await ctx.emit({ type: "CheckpointPacked", payload: { dir: ctx.outDir, format: written.format, shards: written.shards.length } });
  ctx.say(`wrote ${written.shards.length} shard(s) to ${ctx.outDir} in ${((Date.now() - t0) / 1000).toFixed(2)} s`);
}

// What a run will need on disk and in memory, estimated before any work from the model's shapes
// and the options, and checked against the free space of the work and output filesystems and
// the machine's available memory: a run that cannot fit is refused up front with the numbers.
//
// Disk. Per layer the work dir holds: its input activations (f32 [calib tokens, hidden]); for
// a MoE layer the routing input (same size) and plan ([tokens, top-k] i32 + f32, [tokens,
// experts] f32); with GPTQ one f32 Hessian [cols, cols] per distinct input of a quantized
// linear; the quantizer's outputs (u8 codes, f32 scales, i32 zero points and g_idx; float
// schemes also their f32 dequantization); matrices cut out of fused tensors; and the decoded
// bf16 copy of a quantized input's tensors. A layer's artifacts are deleted once it is packed
// and the loader runs `aheadLayers` (2) ahead of the packer, so at most 3 layers' artifacts
// exist at once (all layers with --keep-artifacts), plus the packed parts (the output's size)
// until the output is published. The output dir then takes the output's size once more.
//
// Memory. The largest of: the calibrator (hidden states, residual, attention output and MLP
// input over all calibration tokens in f32, the layer's weights, the engine's 1 GiB f32 weight
// cache and the two Hessians being accumulated) and the evaluator (the hidden states of both
// models over all evaluation windows, one batch's final norms, one window's logits of both
// models in f32, a layer of each model's weights and two 1 GiB caches); plus, concurrently, each
// quantizer replica (one matrix in f32 twice and its Hessian twice). Estimates, not bounds: they err high.
import { readFileSync, statfsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { DEFAULT_WINDOWS } from "@moeq/data";
import { checkpointPartOf } from "@moeq/formats";
import type { LoadedModel } from "@moeq/models";
import { isFloatScheme, OptionsError, type QuantTarget, type RunOptions } from "@moeq/runtime";

const GiB = 2 ** 30;
const F32 = 4;
const ENGINE_CACHE = GiB;
/** layers whose artifacts can exist at once: the loader's aheadLayers (2) + the one being packed */
const LIVE_LAYERS = 3;

export interface ResourceEstimate {
  /** peak bytes in the work dir */
  readonly workDirBytes: number;
  /** the largest single layer's artifacts */
  readonly layerArtifactBytes: number;
  /** the quantized checkpoint */
  readonly outputBytes: number;
  /** peak resident bytes of all stage processes together */
  readonly memoryBytes: number;
}

const windowsOf = (spec: string, split: "calib" | "eval") => {
  const m = /(\d+)x(\d+)$/.exec(spec);
  return m ? { n: Number(m[1]), seqLen: Number(m[2]) } : DEFAULT_WINDOWS[split];
};

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** bytes of one target's packed form in the output (codes + scales; zero points when asymmetric) */
function packedBytes(t: QuantTarget, o: RunOptions): number {
  const n = t.rows * t.cols;
  const groups = o.groupSize > 0 ? Math.ceil(t.cols / o.groupSize) : 1;
  switch (o.scheme) {
    case "w4a16":
    case "w8a16":
      return (n * o.bits) / 8 + t.rows * groups * (o.symmetric ? 4 : 8);
    case "nvfp4":
      return n / 2 + n / 16 + 8;
    case "mxfp4":
      return n / 2 + n / 32;
    default:
      return n + t.rows * Math.ceil(t.cols / 128) * F32;
  }
}

/** bytes the quantizer writes for one target */
function quantOutputBytes(t: QuantTarget, o: RunOptions): number {
  const n = t.rows * t.cols;
  const groups = o.groupSize > 0 ? Math.ceil(t.cols / o.groupSize) : 1;
  return n + t.rows * groups * 2 * F32 + t.cols * F32 + (isFloatScheme(o.scheme) ? n * F32 : 0);
}

export function estimateResources(
  model: LoadedModel,
  targets: readonly QuantTarget[],
  o: RunOptions,
): ResourceEstimate {
  const { spec, checkpoint } = model;
  const H = spec.hiddenSize;
  const cal = windowsOf(o.calib, "calib");
  const ev = windowsOf(o.eval, "eval");
  const rows = cal.n * cal.seqLen;
  const layers = spec.layers.length;
  const perLayer = new Array<number>(layers).fill(rows * H * F32); // the layer's input activations
  const layerWeights = new Array<number>(layers).fill(0);
  for (let L = 0; L < layers; L++) {
    const m = spec.layers[L].mlp;
    if (m.kind === "moe") perLayer[L] += rows * H * F32 + rows * (m.routing.topK * 2 + m.experts.numExperts) * F32;
  }
  const hessians = new Set<string>();
  let largestHessian = 0;
  for (const t of targets) {
    perLayer[t.layer] += quantOutputBytes(t, o) + (t.extracted ? t.rows * t.cols * 2 : 0);
    if (o.algorithm === "gptq") {
      // gate/up (and q/k/v) share their input's Hessian; down and o have their own
      const own = /down|o_proj|out_proj|wo\b/.test(t.proj);
      const key = `${t.layer}/${t.module}/${t.expert}/${own ? t.proj : "input"}/${t.cols}`;
      if (!hessians.has(key)) perLayer[t.layer] += t.cols * t.cols * F32;
      hessians.add(key);
      largestHessian = Math.max(largestHessian, t.cols * t.cols * F32);
    }
  }
  // The model's tensors: bytes per layer as stored, and the logical (bf16) size of those a
  // quantized input stores in blocks, which the loader decodes into the work dir.
  const quantized = new Set(targets.map((t) => t.tensor));
  let passthrough = 0;
  for (const name of model.source.names()) {
    const stored = checkpoint.has(name) ? checkpoint.entry(name) : undefined;
    const part = checkpointPartOf(name);
    const L = part < 0 ? 0 : Math.min(part, layers - 1);
    const decoded = !stored || checkpoint.has(`${name}_scale_inv`);
    // FP8 blocks: one byte per value; MXFP4 `<name>_blocks`: two values per byte; read from the
    // headers, never by decoding (the source's tensor() would decode the whole tensor)
    const blocks = `${name}_blocks`;
    const logical = stored
      ? decoded
        ? numel(stored.shape) * 2
        : stored.byteLength
      : checkpoint.has(blocks)
        ? numel(checkpoint.entry(blocks).shape) * 2 * 2
        : numel(model.source.tensor(name).shape) * 2;
    if (decoded) perLayer[L] += logical;
    layerWeights[L] += logical;
    if (!quantized.has(name)) passthrough += logical;
  }
  const output = passthrough + targets.reduce((s, t) => s + packedBytes(t, o), 0);
  const layerArtifactBytes = Math.max(...perLayer);
  const artifacts = o.keepArtifacts
    ? perLayer.reduce((a, b) => a + b, 0)
    : [...perLayer]
        .sort((a, b) => b - a)
        .slice(0, LIVE_LAYERS)
        .reduce((a, b) => a + b, 0);
  const maxLayerWeights = Math.max(...layerWeights);
  const vocab = spec.vocabSize;
  const batch = Math.min(o.batchWindows, ev.n);
  const calibrator = 4 * rows * H * F32 + maxLayerWeights + ENGINE_CACHE + 2 * largestHessian;
  const evaluator =
    2 * 2 * ev.n * ev.seqLen * H * F32 +
    2 * batch * ev.seqLen * H * F32 +
    2 * ev.seqLen * vocab * F32 +
    2 * maxLayerWeights +
    2 * ENGINE_CACHE;
  const largestMatrix = Math.max(0, ...targets.map((t) => t.rows * t.cols));
  const quantizer = 2 * largestMatrix * F32 + 2 * largestHessian;
  return {
    workDirBytes: artifacts + output,
    layerArtifactBytes,
    outputBytes: output,
    memoryBytes: Math.max(calibrator, evaluator) + o.quantizers * quantizer,
  };
}

/** Free bytes for an unprivileged writer on the filesystem holding `path` (or its parent). */
function freeBytes(path: string): { bytes: number; fs: string } {
  for (let p = path; ; p = dirname(p)) {
    try {
      const s = statfsSync(p);
      return { bytes: s.bavail * s.bsize, fs: p };
    } catch (e) {
      if (dirname(p) === p) throw e;
    }
  }
}

/** MemAvailable of /proc/meminfo (what can be allocated without swapping). */
function availableMemory(): number | undefined {
  try {
    const m = /MemAvailable:\s+(\d+)\s+kB/.exec(readFileSync("/proc/meminfo", "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

const gib = (b: number) => (b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);

/** Refuses (OptionsError naming the directory and the numbers) a run that cannot fit. */
export function checkResources(est: ResourceEstimate, workDir: string, outDir: string): void {
  const work = freeBytes(workDir);
  const out = freeBytes(outDir);
  const sameFs = statSync(work.fs).dev === statSync(out.fs).dev;
  const needWork = est.workDirBytes + (sameFs ? est.outputBytes : 0);
  if (needWork > work.bytes)
    throw new OptionsError({
      field: "work-dir",
      message: `not enough disk space for this run: ${workDir} needs about ${gib(needWork)} (work dir peak ${gib(est.workDirBytes)}: ~${liveLayers(est)} layers of artifacts at up to ${gib(est.layerArtifactBytes)} each + the packed output ${gib(est.outputBytes)}${sameFs ? `, plus the output dir ${gib(est.outputBytes)} on the same filesystem` : ""}), ${work.fs} has ${gib(work.bytes)} free`,
    });
  if (!sameFs && est.outputBytes > out.bytes)
    throw new OptionsError({
      field: "out",
      message: `not enough disk space for the output: ${outDir} needs about ${gib(est.outputBytes)}, ${out.fs} has ${gib(out.bytes)} free`,
    });
  const mem = availableMemory();
  if (mem !== undefined && est.memoryBytes > mem)
    throw new OptionsError({
      field: "memory",
      message: `not enough memory for this run: its stage processes need about ${gib(est.memoryBytes)} together, ${gib(mem)} is available (MemAvailable); use fewer or shorter windows (--calib, --eval, --batch-windows) or fewer --quantizers`,
    });
}

const liveLayers = (est: ResourceEstimate) =>
  Math.max(1, Math.round((est.workDirBytes - est.outputBytes) / Math.max(1, est.layerArtifactBytes)));

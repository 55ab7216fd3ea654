// The calibrator owns the layer-sequential forward pass over the calibration windows. For each
// layer: attention → MoE input x → routing plan (router-override) → per-expert Hessians of each
// quantized projection under the plan's calibration weights (gate/up share the expert input,
// down uses act(gate)·up of the same rows) → quantize work items → the layer output under the
// real routing (full-precision weights, or the layer's dequantized weights with
// --propagate quantized) → next layer's input persisted atomically → LayerCompleted.
// In memory: one layer's weights (mapped from the loader's descriptors) and the activations.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type TensorDescriptor, workId } from "@moeq/contracts";
import { buildSpec, Engine, type RawConfig, type Routing, type ModelSpec } from "@moeq/models";
import { type DeviceKernels, deviceKernels, parseDevice } from "@moeq/native";
import {
  descriptorSource,
  type QuantTarget,
  quantTargets,
  type StageContext,
  StageError,
  targetKey,
  targetWeight,
  tokenWindows,
  writeFileAtomic,
  writeTensorFile,
} from "@moeq/runtime";
import { dequantOverlay } from "./dequant.ts";
import { requestPlan } from "./route-client.ts";
import { telemetry as tracing } from "@moeq/runtime";
import { publishUncalibrated } from "./trace.ts";

const actsFile = (dir: string, L: number) => join(dir, `layer-${L}.input.f32`);

// fused tensors of the current layer, mapped once for all the matrices cut out of them
const fusedCache = new Map<string, Float32Array | Uint16Array | Uint8Array>();

function gatherRows(x: Float32Array, cols: number, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length * cols);
  for (let i = 0; i < rows.length; i++) out.set(x.subarray(rows[i] * cols, (rows[i] + 1) * cols), i * cols);
  return out;
}

// --device: set once per run from the options (runs written before --device existed mean cpu)
let kernels: DeviceKernels = deviceKernels({ kind: "cpu" });

async function weightedHessian(x: Float32Array, n: number, cols: number, w: Float32Array): Promise<{ h: Float32Array; absmax: number }> {
  const acc = new Float64Array(cols * cols);
  if (n > 0) await kernels.hessianAccumulate(acc, x, n, cols, w);
  let absmax = 0;
  for (let i = 0; i < n * cols; i++) absmax = Math.max(absmax, Math.abs(x[i]));
  return { h: Float32Array.from(acc), absmax };
}

export async function runCalibrator(ctx: StageContext): Promise<void> {
  const o = ctx.options;
  kernels = deviceKernels(parseDevice(o.device ?? "cpu"));
  const opened = await ctx.waitFor("ModelOpened");
  const { arch, spec } = buildSpec(opened.payload.config as RawConfig, "ModelOpened.config");
  const targets = quantTargets(arch, spec, o.targets);
  const layersDone = new Set(ctx.all("LayerCompleted").map((e) => e.payload.layer));
  let start = 0;
  while (layersDone.has(start)) start++;
  if (start >= spec.layers.length) return;
  if (o.algorithm === "rtn" && o.propagate === "fp") return rtnOnly(ctx, spec.layers.length, start, targets);
  const windows = await tokenWindows(o.calib, "calib", { modelDir: ctx.modelDir, vocab: spec.vocabSize, seed: o.seed, cacheDir: ctx.paths.cache });
  const { n: N, seqLen: T } = windows;
  const H = spec.hiddenSize;
  const rows = N * T;
  const batch = Math.min(o.batchWindows, N);
  ctx.say(`calibrating on ${N}×${T} tokens from layer ${start}`);

  let h: Float32Array;
  if (start === 0) {
    const l0 = await ctx.waitFor("LayerLoaded", (e) => e.payload.layer === 0);
    const eng = new Engine(spec, descriptorSource(ctx.reader, new Map(Object.entries(l0.payload.tensors))));
    h = eng.embed(windows.ids, eng.sequences(N, T));
  } else {
    const f = actsFile(ctx.paths.acts, start);
    if (!existsSync(f)) throw new StageError({ stage: ctx.stage, message: `${f} is missing: layer ${start - 1} completed without its output`, permanent: true });
    const b = readFileSync(f);
    h = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    if (h.length !== rows * H) throw new StageError({ stage: ctx.stage, message: `${f}: ${h.length} values, expected ${rows}×${H}`, permanent: true });
  }

  for (let L = start; L < spec.layers.length; L++) {
    const t0 = Date.now();
    const loaded = await ctx.waitFor("LayerLoaded", (e) => e.payload.layer === L);
    const descs = new Map(Object.entries(loaded.payload.tensors));
    fusedCache.clear();
    const engine = new Engine(spec, descriptorSource(ctx.reader, descs), { cacheBytes: 2 ** 30 });
    const residual = new Float32Array(rows * H);
    const x = new Float32Array(rows * H);
    for (let b0 = 0; b0 < N; b0 += batch) {
      const nb = Math.min(batch, N - b0);
      const seq = engine.sequences(nb, T);
      const a = await engine.attention(L, h.subarray(b0 * T * H, (b0 + nb) * T * H), seq);
      residual.set(a.residual, b0 * T * H);
      x.set(a.x, b0 * T * H);
    }
    const layerTargets = targets.filter((t) => t.layer === L);
    const tAttn = Date.now();
    let y: Float32Array;
    if (engine.isMoe(L)) {
      y = await tracing.layerSpan(L, () => moeLayer(ctx, spec, engine, L, x, rows, layerTargets, descs));
    } else {
      y = new Float32Array(rows * H);
      for (let r0 = 0; r0 < rows; r0 += batch * T) {
        const nr = Math.min(batch * T, rows - r0);
        y.set((await engine.mlp(L, x.subarray(r0 * H, (r0 + nr) * H))).out, r0 * H);
      }
      await tracing.layerSpan(L, () => publishRtn(ctx, L, layerTargets, descs));
    }
    const tBlock = Date.now();
    h = engine.finishLayer(residual, y);
    writeFileAtomic(actsFile(ctx.paths.acts, L + 1), new Uint8Array(h.buffer, h.byteOffset, h.byteLength));
    await ctx.pause();
    await ctx.emit({
      type: "LayerCompleted",
      payload: { layer: L, experts: spec.layers[L].mlp.kind === "moe" ? (spec.layers[L].mlp as { experts: { numExperts: number } }).experts.numExperts : 0, seconds: (Date.now() - t0) / 1000 },
    });
    rmSync(actsFile(ctx.paths.acts, L), { force: true });
    ctx.say(`layer ${L} done in ${((Date.now() - t0) / 1000).toFixed(2)} s (attention ${((tAttn - t0) / 1000).toFixed(2)} s, MLP/MoE + calibration ${((tBlock - tAttn) / 1000).toFixed(2)} s)`);
  }
}

/** RTN with full-precision propagation needs no statistics: publish the work, skip the forward pass. */
async function rtnOnly(ctx: StageContext, layers: number, start: number, targets: readonly QuantTarget[]) {
  for (let L = start; L < layers; L++) {
    const t0 = Date.now();
    const loaded = await ctx.waitFor("LayerLoaded", (e) => e.payload.layer === L);
    const descs = new Map(Object.entries(loaded.payload.tensors));
    fusedCache.clear();
    const layerTargets = targets.filter((t) => t.layer === L);
    await tracing.layerSpan(L, () => publishUncalibrated(L, layerTargets, (t) => publishWork(ctx, t, descs.get(t.tensor), EMPTY_HESSIAN, "rtn", 0)));
    await ctx.pause();
    await ctx.emit({ type: "LayerCompleted", payload: { layer: L, experts: new Set(layerTargets.map((t) => t.expert)).size, seconds: (Date.now() - t0) / 1000 } });
  }
}

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

const EMPTY_HESSIAN: TensorDescriptor = { dtype: "f32", shape: [0], loc: { kind: "inline", data: new Uint8Array(0) } };

async function publishWork(ctx: StageContext, t: QuantTarget, source: TensorDescriptor | undefined, hessian: TensorDescriptor, algorithm: string, weightMass: number, fallback?: string) {
  const weight = targetWeight(ctx.reader, join(ctx.paths.tensors, "weights"), t, source, fusedCache);
  if (!weight) throw new StageError({ stage: ctx.stage, message: `tensor ${t.tensor} was not in LayerLoaded(${t.layer})`, permanent: true });
  const id = workId({ runId: ctx.runId, stage: "quantize", layer: t.layer, expert: t.expert, proj: t.proj });
  await ctx.queues.publish("quantize", {
    id,
    runId: ctx.runId,
    kind: "quantize-expert",
    payload: { layer: t.layer, expert: t.expert, proj: t.proj, weight, hessian, algorithm, options: quantOptions(ctx, t, weightMass, fallback) },
  });
}

/** Modules outside the routed experts are quantized with RTN in this issue (no Hessian). */
async function publishRtn(ctx: StageContext, L: number, targets: readonly QuantTarget[], descs: ReadonlyMap<string, TensorDescriptor>) {
  await publishUncalibrated(L, targets.filter((t) => t.module !== "experts"), (t) => publishWork(ctx, t, descs.get(t.tensor), EMPTY_HESSIAN, "rtn", 0));
}

async function moeLayer(
  ctx: StageContext,
  spec: ModelSpec,
  engine: Engine,
  L: number,
  x: Float32Array,
  rows: number,
  targets: readonly QuantTarget[],
  descs: ReadonlyMap<string, TensorDescriptor>,
): Promise<Float32Array> {
  const H = spec.hiddenSize;
  const m = spec.layers[L].mlp;
  if (m.kind !== "moe") throw new Error("unreachable");
  const E = m.experts.numExperts;
  const k = m.routing.topK;
  const calibDir = join(ctx.paths.tensors, "calib");
  const tStart = Date.now();
  const xDesc = writeTensorFile(calibDir, `L${L}.x.bin`, "f32", [rows, H], x);
  const plan = await requestPlan(ctx, L, xDesc);
  const indices = ctx.reader.i32(plan.indices, `plan L${L} indices`);
  const weights = ctx.reader.f32(plan.weights, `plan L${L} weights`);
  const calib = ctx.reader.f32(plan.calib, `plan L${L} calib`);
  if (indices.length !== rows * k || calib.length !== rows * E)
    throw new StageError({ stage: ctx.stage, message: `routing plan of layer ${L} has the wrong size`, permanent: true });
  const tPlan = Date.now();
  const routing: Routing = { rows, numExperts: E, topK: k, logits: new Float32Array(0), scores: new Float32Array(0), indices, weights };

  const ctxAlgorithm = ctx.options.algorithm;
  // Statistics first (CPU), then the events in order, with the work items published alongside.
  const pending: Promise<unknown>[] = [];
  for (let e = 0; e < E; e++) {
    const expertTargets = targets.filter((t) => t.module === "experts" && t.expert === e);
    if (expertTargets.length === 0) continue;
    await tracing.expertSpan(L, e, async () => {
      const used: number[] = [];
      for (let t = 0; t < rows; t++) if (calib[t * E + e] > 0) used.push(t);
      const w = Float32Array.from(used, (t) => calib[t * E + e]);
      const mass = w.reduce((s, v) => s + v, 0);
      const needHessian = ctxAlgorithm === "gptq" && used.length > 0;
      let inputH: TensorDescriptor = EMPTY_HESSIAN;
      let downH: TensorDescriptor = EMPTY_HESSIAN;
      let inAbs = 0;
      let downAbs = 0;
      const tStats = performance.now();
      if (used.length > 0) {
        const xe = gatherRows(x, H, used);
        const { act } = await engine.expert(L, e, xe);
        const I = act.length / used.length;
        if (needHessian) {
          const hi = await weightedHessian(xe, used.length, H, w);
          const hd = await weightedHessian(act, used.length, I, w);
          inputH = writeTensorFile(calibDir, `L${L}.E${e}.input.hessian`, "f32", [H, H], hi.h);
          downH = writeTensorFile(calibDir, `L${L}.E${e}.down.hessian`, "f32", [I, I], hd.h);
          inAbs = hi.absmax;
          downAbs = hd.absmax;
        } else {
          for (const v of xe) inAbs = Math.max(inAbs, Math.abs(v));
          for (const v of act) downAbs = Math.max(downAbs, Math.abs(v));
        }
      }
      // gate/up share one Hessian: each projection's span carries the time of the statistics it uses
      const computeMs = performance.now() - tStats;
      for (const t of expertTargets) {
        const isDown = t.proj === "down_proj";
        const hessian = isDown ? downH : inputH;
        const algorithm = needHessian ? "gptq" : "rtn";
        const hessianBytes = hessian.shape.reduce((a, b) => a * b, 1) * 4;
        const work = { layer: L, expert: e, proj: t.proj, tokensRouted: used.length, weightMass: mass, bytes: hessianBytes, algorithm, computeMs };
        // the work item is published inside the span (its consumer's parent); the span does not wait for the ack
        const published = await tracing.projectionSpan("calibrate", work, async () => {
          await ctx.emit({
            type: "ExpertCalibrated",
            payload: { layer: L, expert: e, proj: t.proj, hessian, tokens: used.length, weightMass: mass, inputAbsmax: isDown ? downAbs : inAbs },
          });
          const fallback = ctxAlgorithm === "gptq" && used.length === 0 ? "no calibration tokens under the policy: RTN" : undefined;
          return { done: publishWork(ctx, t, descs.get(t.tensor), hessian, algorithm, mass, fallback) };
        });
        pending.push(published.done);
      }
    });
  }
  await Promise.all(pending);
  await publishRtn(ctx, L, targets, descs);
  const tCal = Date.now();
  ctx.say(`layer ${L}: plan ${((tPlan - tStart) / 1000).toFixed(2)} s, statistics + work items ${((tCal - tPlan) / 1000).toFixed(2)} s`);

  if (ctx.options.propagate === "quantized") {
    const keys = targets.map(targetKey);
    await ctx.until(() => keys.every((key) => ctx.has(`ExpertQuantized/${key}`)));
    const quantized = ctx.all("ExpertQuantized", (ev) => ev.payload.layer === L);
    engine.setSource(dequantOverlay(ctx, spec, engine.weights.source, targets, quantized));
  }
  return engine.moe(L, x, routing);
}

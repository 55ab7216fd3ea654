// The calibrator owns the layer-sequential forward pass over the calibration windows. For each
// layer:
//   1. attention over the windows; with attention targets, the statistics of its linears come
//      from the inputs the engine applies (linear hook) in that same pass → their work items;
//   2. with --propagate quantized and attention targets: wait for the quantized attention and run
//      attention again with it, so the MLP/MoE statistics see the input the packed model computes
//      (GPTQ's sequential order: attention first, then the MLP on quantized-attention inputs);
//   3. MoE: routing plan (router-override) → per-expert Hessians of each quantized projection
//      under the plan's calibration weights (gate/up share the expert input, down uses act(gate)·up
//      of the same rows; Llama 4's experts see their rows scaled by the router score) and the
//      shared expert's (weight 1 per token) → work items; dense MLP: its linears likewise;
//   4. the layer output under the real routing (full precision, or the layer's dequantized
//      weights with --propagate quantized) → next layer's input persisted atomically →
//      LayerCompleted.
// In memory: one layer's weights (mapped from the loader's descriptors), the activations and the
// k×k sums of the inputs being gathered.
import { existsSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { EventOf, TensorDescriptor } from "@moeq/contracts";
import { buildSpec, Engine, type ModelSpec, type RawConfig, type Routing, type WeightSource } from "@moeq/models";
import { cudaKernels, type DeviceKernels, type DeviceSpec, deviceKernels, parseDevice } from "@moeq/native";
import {
  descriptorSource,
  isFloatScheme,
  layerInputFile,
  type QuantTarget,
  quantTargets,
  type StageContext,
  StageError,
  targetKey,
  tokenWindows,
  telemetry as tracing,
  writeFileAtomic,
  writeTensorFile,
} from "@moeq/runtime";
import { CudaTensorStore, readFileInto } from "@moeq/store";
import { expertChunks, type LayerBatch, layerBatch, rowPlan, slicePlan } from "./batch-plan.ts";
import { dequantOverlay } from "./dequant.ts";
import {
  type DeviceStatistics,
  type DeviceWeights,
  deviceMoeStatistics,
  handOff,
  uploadExpertWeights,
} from "./device-moe.ts";
import { expertInputStatistics, inputScales, routerInputScores } from "./expert-stats.ts";
import { InputStatistics } from "./input-stats.ts";
import { publishLinears } from "./linear-work.ts";
import { requestPlan } from "./route-client.ts";
import { publishUncalibrated } from "./trace.ts";
import { EMPTY_HESSIAN, fusedCache, publishWork } from "./work.ts";

// Layer inputs stay f32: the next layer's statistics and the routing plan are computed from
// them, and bf16 would round every activation before GPTQ sees it (the reference keeps f32).
const actsFile = layerInputFile;

// --device: set once per run from the options (runs written before --device existed mean cpu)
let device: DeviceSpec = { kind: "cpu" };
let kernels: DeviceKernels = deviceKernels(device);
// cuda descriptors of the batched hand-off (opened on the first batched layer)
let cudaStore: CudaTensorStore | undefined;

const isAttention = (t: QuantTarget) => t.module === "attention" || t.module === "indexer";

/** What one layer's forward needs besides the engine. */
interface LayerRun {
  readonly ctx: StageContext;
  readonly spec: ModelSpec;
  readonly engine: Engine;
  /** the layer's full-precision weights (the engine's source may be overlaid) */
  readonly base: WeightSource;
  readonly L: number;
  readonly targets: readonly QuantTarget[];
  readonly descs: ReadonlyMap<string, TensorDescriptor>;
  /** rows per engine call (batch windows × T) */
  readonly chunk: number;
  /** GPTQ (else RTN) for the linears outside the routed experts */
  readonly linearGptq: boolean;
}

export async function runCalibrator(ctx: StageContext): Promise<void> {
  const o = ctx.options;
  device = parseDevice(o.device ?? "cpu");
  kernels = deviceKernels(device);
  const opened = await ctx.waitFor("ModelOpened");
  const { arch, spec } = buildSpec(opened.payload.config as RawConfig, "ModelOpened.config");
  const targets = quantTargets(arch, spec, o.targets);
  const layersDone = new Set(ctx.all("LayerCompleted").map((e) => e.payload.layer));
  let start = 0;
  while (layersDone.has(start)) start++;
  if (start >= spec.layers.length) return;
  if (o.algorithm === "rtn" && o.propagate === "fp") return rtnOnly(ctx, spec.layers.length, start, targets);
  const windows = await tokenWindows(o.calib, "calib", {
    modelDir: ctx.modelDir,
    vocab: spec.vocabSize,
    seed: o.seed,
    cacheDir: ctx.paths.cache,
  });
  const { n: N, seqLen: T } = windows;
  const H = spec.hiddenSize;
  const rows = N * T;
  const batch = Math.min(o.batchWindows, N);
  const linearGptq = nonExpertAlgorithm(ctx) === "gptq";
  ctx.say(`calibrating on ${N}×${T} tokens from layer ${start}`);

  let h: Float32Array;
  if (start === 0) {
    const l0 = await ctx.waitFor("LayerLoaded", (e) => e.payload.layer === 0);
    const eng = new Engine(spec, descriptorSource(ctx.reader, new Map(Object.entries(l0.payload.tensors))));
    h = eng.embed(windows.ids, eng.sequences(N, T));
  } else {
    const f = actsFile(ctx.paths.acts, start);
    if (!existsSync(f))
      throw new StageError({
        stage: ctx.stage,
        message: `${f} is missing: layer ${start - 1} completed without its output`,
        permanent: true,
      });
    // read in chunks into one f32 buffer: the file may pass 2 GiB (readFileSync's limit)
    const size = statSync(f).size;
    if (size !== rows * H * 4)
      throw new StageError({
        stage: ctx.stage,
        message: `${f}: ${size / 4} values, expected ${rows}×${H}`,
        permanent: true,
      });
    h = new Float32Array(rows * H);
    readFileInto(f, new Uint8Array(h.buffer));
  }

  for (let L = start; L < spec.layers.length; L++) {
    const t0 = Date.now();
    const loaded = await ctx.waitFor("LayerLoaded", (e) => e.payload.layer === L);
    const descs = new Map(Object.entries(loaded.payload.tensors));
    fusedCache.clear();
    const base = descriptorSource(ctx.reader, descs);
    const engine = new Engine(spec, base, { cacheBytes: 2 ** 30 });
    const run: LayerRun = {
      ctx,
      spec,
      engine,
      base,
      L,
      targets: targets.filter((t) => t.layer === L),
      descs,
      chunk: batch * T,
      linearGptq,
    };
    let tAttn = 0;
    const { residual, y } = await tracing.layerSpan(L, async () => {
      const attnTargets = run.targets.filter(isAttention);
      const stats = attnTargets.length > 0 ? new InputStatistics(attnTargets, kernels, linearGptq) : null;
      let a = await attentionPass(run, h, N, T, batch, stats);
      if (stats) {
        await publishLinears(ctx, L, attnTargets, stats, descs, linearGptq);
        if (o.propagate === "quantized") {
          engine.setSource(dequantOverlay(ctx, spec, base, attnTargets, await quantized(ctx, L, attnTargets)));
          a = await attentionPass(run, h, N, T, batch, null);
        }
      }
      tAttn = Date.now();
      const block = engine.isMoe(L) ? await moeLayer(run, a.x, rows) : await denseLayer(run, a.x, rows);
      return { residual: a.residual, y: block };
    });
    const tBlock = Date.now();
    h = engine.finishLayer(residual, y);
    // the next layer's input, for a restart; the last layer's output has no reader
    if (L + 1 < spec.layers.length)
      writeFileAtomic(actsFile(ctx.paths.acts, L + 1), new Uint8Array(h.buffer, h.byteOffset, h.byteLength));
    await ctx.pause();
    await ctx.emit({
      type: "LayerCompleted",
      payload: {
        layer: L,
        experts:
          spec.layers[L].mlp.kind === "moe"
            ? (spec.layers[L].mlp as { experts: { numExperts: number } }).experts.numExperts
            : 0,
        seconds: (Date.now() - t0) / 1000,
      },
    });
    rmSync(actsFile(ctx.paths.acts, L), { force: true });
    ctx.say(
      `layer ${L} done in ${((Date.now() - t0) / 1000).toFixed(2)} s (attention ${((tAttn - t0) / 1000).toFixed(2)} s, MLP/MoE + calibration ${((tBlock - tAttn) / 1000).toFixed(2)} s)`,
    );
  }
}

/**
 * The algorithm of the linears outside the routed experts: the run's, unless the graph gives the
 * calibrator `nonExpertAlgorithm: rtn` (GPTQ experts with RTN attention/MLP, an ablation that
 * measures what GPTQ buys there; see docs/calibration.md).
 */
function nonExpertAlgorithm(ctx: StageContext): "gptq" | "rtn" {
  const v = ctx.stageOptions.nonExpertAlgorithm ?? ctx.options.algorithm;
  if (v !== "gptq" && v !== "rtn")
    throw new StageError({
      stage: ctx.stage,
      message: `calibrator option nonExpertAlgorithm: expected "gptq" or "rtn", got ${JSON.stringify(v)}`,
      permanent: true,
    });
  return v;
}

/** Attention over the windows in batches → residual and MLP input; `stats` observes its linears. */
async function attentionPass(
  run: LayerRun,
  h: Float32Array,
  N: number,
  T: number,
  batch: number,
  stats: InputStatistics | null,
) {
  const { engine, L } = run;
  const H = run.spec.hiddenSize;
  const residual = new Float32Array(N * T * H);
  const x = new Float32Array(N * T * H);
  engine.setLinearHook(stats?.hook);
  try {
    for (let b0 = 0; b0 < N; b0 += batch) {
      const nb = Math.min(batch, N - b0);
      const a = await engine.attention(L, h.subarray(b0 * T * H, (b0 + nb) * T * H), engine.sequences(nb, T));
      await stats?.flush();
      residual.set(a.residual, b0 * T * H);
      x.set(a.x, b0 * T * H);
    }
  } finally {
    engine.setLinearHook(undefined);
  }
  return { residual, x };
}

/** Waits until every target has its ExpertQuantized (--propagate quantized) and returns the layer's. */
async function quantized(
  ctx: StageContext,
  L: number,
  targets: readonly QuantTarget[],
): Promise<EventOf<"ExpertQuantized">[]> {
  const keys = targets.map(targetKey);
  await ctx.until(() => keys.every((key) => ctx.has(`ExpertQuantized/${key}`)));
  return ctx.all("ExpertQuantized", (ev) => ev.payload.layer === L);
}

/** With --propagate quantized, the layer's block weights as quantized (attention included). */
async function useQuantized(run: LayerRun): Promise<void> {
  if (run.ctx.options.propagate !== "quantized") return;
  const events = await quantized(run.ctx, run.L, run.targets);
  run.engine.setSource(dequantOverlay(run.ctx, run.spec, run.base, run.targets, events));
}

/** Runs `f` over row chunks of x with `stats` observing the linears, returning the concatenated outputs. */
async function overRows(
  run: LayerRun,
  x: Float32Array,
  rows: number,
  stats: InputStatistics | null,
  f: (xs: Float32Array) => Promise<Float32Array>,
): Promise<Float32Array> {
  const H = run.spec.hiddenSize;
  const y = new Float32Array(rows * H);
  run.engine.setLinearHook(stats?.hook);
  try {
    for (let r0 = 0; r0 < rows; r0 += run.chunk) {
      const nr = Math.min(run.chunk, rows - r0);
      y.set(await f(x.subarray(r0 * H, (r0 + nr) * H)), r0 * H);
      await stats?.flush();
    }
  } finally {
    run.engine.setLinearHook(undefined);
  }
  return y;
}

async function denseLayer(run: LayerRun, x: Float32Array, rows: number): Promise<Float32Array> {
  const { ctx, engine, L } = run;
  const mlpTargets = run.targets.filter((t) => t.module === "mlp");
  const stats = mlpTargets.length > 0 ? new InputStatistics(mlpTargets, kernels, run.linearGptq) : null;
  let y = await overRows(run, x, rows, stats, async (xs) => (await engine.mlp(L, xs)).out);
  if (stats) {
    await publishLinears(ctx, L, mlpTargets, stats, run.descs, run.linearGptq);
    if (ctx.options.propagate === "quantized") {
      await useQuantized(run);
      y = await overRows(run, x, rows, null, async (xs) => (await engine.mlp(L, xs)).out);
    }
  }
  return y;
}

/** RTN with full-precision propagation needs no statistics: publish the work, skip the forward pass. */
async function rtnOnly(ctx: StageContext, layers: number, start: number, targets: readonly QuantTarget[]) {
  for (let L = start; L < layers; L++) {
    const t0 = Date.now();
    const loaded = await ctx.waitFor("LayerLoaded", (e) => e.payload.layer === L);
    const descs = new Map(Object.entries(loaded.payload.tensors));
    fusedCache.clear();
    const layerTargets = targets.filter((t) => t.layer === L);
    await tracing.layerSpan(L, () =>
      publishUncalibrated(L, layerTargets, (t) => publishWork(ctx, t, descs.get(t.tensor), EMPTY_HESSIAN, "rtn", 0)),
    );
    await ctx.pause();
    await ctx.emit({
      type: "LayerCompleted",
      payload: {
        layer: L,
        experts: new Set(layerTargets.map((t) => t.expert)).size,
        seconds: (Date.now() - t0) / 1000,
      },
    });
  }
}

async function moeLayer(run: LayerRun, x: Float32Array, rows: number): Promise<Float32Array> {
  const { ctx, spec, engine, L, targets, descs } = run;
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
    throw new StageError({
      stage: ctx.stage,
      message: `routing plan of layer ${L} has the wrong size`,
      permanent: true,
    });
  const tPlan = Date.now();
  const routing: Routing = {
    rows,
    numExperts: E,
    topK: k,
    logits: new Float32Array(0),
    scores: new Float32Array(0),
    indices,
    weights,
  };
  // the router's own scores, for the tokens a policy adds to an expert whose weight scales its input
  let scores: Float32Array | null = null;
  try {
    scores = m.weightScalesInput ? routerInputScores(m, (await engine.router(L, x)).logits) : null;
  } catch (e) {
    throw new StageError({ stage: ctx.stage, message: `layer ${L}: ${(e as Error).message}`, permanent: true });
  }

  const gptq = ctx.options.algorithm === "gptq";
  // --device cuda: every routed expert's statistics in one pass on the GPU, two batched work items
  const batched = device.kind === "cuda" && gptq && !isFloatScheme(ctx.options.scheme) ? layerBatch(m, targets) : null;
  if (typeof batched === "string") ctx.say(`layer ${L}: routed experts per expert on the CPU path (${batched})`);
  const onDevice = batched !== null && typeof batched !== "string" ? batched : null;
  if (onDevice) await deviceExperts(run, onDevice, x, calib, routing, scores);
  // Statistics first (CPU), then the events in order, with the work items published alongside.
  const pending: Promise<unknown>[] = [];
  for (let e = 0; e < E && !onDevice; e++) {
    const expertTargets = targets.filter((t) => t.module === "experts" && t.expert === e);
    if (expertTargets.length === 0) continue;
    await tracing.expertSpan(L, e, async () => {
      const used: number[] = [];
      for (let t = 0; t < rows; t++) if (calib[t * E + e] > 0) used.push(t);
      const w = Float32Array.from(used, (t) => calib[t * E + e]);
      const mass = w.reduce((s, v) => s + v, 0);
      const needHessian = gptq && used.length > 0;
      const tStats = performance.now();
      // the expert's own linears see its input (gate/up) and act(gate)·up (down) through the hook
      const stats = await expertInputStatistics({
        engine,
        L,
        e,
        x,
        used,
        w,
        routing,
        scores,
        targets: expertTargets,
        kernels,
        hessians: needHessian,
      });
      // gate/up share one Hessian: each projection's span carries the time of the statistics it uses
      const computeMs = performance.now() - tStats;
      const files = new Map<string, TensorDescriptor>();
      for (const t of expertTargets) {
        const isDown = t.proj === "down_proj";
        const st = stats.stats(t);
        let hessian = EMPTY_HESSIAN;
        if (needHessian && st) {
          hessian =
            files.get(st.group) ??
            writeTensorFile(
              calibDir,
              `L${L}.E${e}.${isDown ? "down" : "input"}.hessian`,
              "f32",
              [st.cols, st.cols],
              st.hessian,
            );
          files.set(st.group, hessian);
        }
        const algorithm = needHessian ? "gptq" : "rtn";
        const hessianBytes = hessian.shape.reduce((a, b) => a * b, 1) * 4;
        const work = {
          layer: L,
          expert: e,
          proj: t.proj,
          tokensRouted: used.length,
          weightMass: mass,
          bytes: hessianBytes,
          algorithm,
          computeMs,
        };
        // the work item is published inside the span (its consumer's parent); the span does not wait for the ack
        const published = await tracing.projectionSpan("calibrate", work, async () => {
          await ctx.emit({
            type: "ExpertCalibrated",
            payload: {
              layer: L,
              expert: e,
              proj: t.proj,
              hessian,
              tokens: used.length,
              weightMass: mass,
              inputAbsmax: st?.absmax ?? 0,
            },
          });
          const fallback = gptq && used.length === 0 ? "no calibration tokens under the policy: RTN" : undefined;
          return { done: publishWork(ctx, t, descs.get(t.tensor), hessian, algorithm, mass, fallback) };
        });
        pending.push(published.done);
      }
    });
  }
  await Promise.all(pending);
  // the shared expert sees every token with weight 1
  const sharedTargets = targets.filter((t) => t.module === "shared_expert");
  if (sharedTargets.length > 0) {
    const stats = new InputStatistics(sharedTargets, kernels, run.linearGptq);
    await overRows(
      run,
      x,
      rows,
      stats,
      async (xs) => (await engine.sharedExpert(L, xs))?.out ?? new Float32Array(xs.length),
    );
    await publishLinears(ctx, L, sharedTargets, stats, descs, run.linearGptq);
  }
  const tCal = Date.now();
  ctx.say(
    `layer ${L}: plan ${((tPlan - tStart) / 1000).toFixed(2)} s, statistics + work items ${((tCal - tPlan) / 1000).toFixed(2)} s`,
  );

  await useQuantized(run);
  const tFwd = Date.now();
  const y = await engine.moe(L, x, routing);
  // the batch's weights and Hessians live in this process: the layer completes once they are consumed
  if (onDevice) {
    const tOut = Date.now();
    await quantized(
      ctx,
      L,
      targets.filter((t) => t.module === "experts"),
    );
    ctx.say(
      `layer ${L}: MoE output (CPU engine) ${((tOut - tFwd) / 1000).toFixed(2)} s, then waited ${((Date.now() - tOut) / 1000).toFixed(2)} s for the batched GPTQ`,
    );
  }
  return y;
}

/**
 * The routed experts of a MoE layer on the device (device-moe.ts): x uploaded once, the policy's
 * rows per expert as one CSR, both Hessian stacks, then the hand-off of the stacks as cuda
 * descriptors in two quantize-batch items.
 */
async function deviceExperts(
  run: LayerRun,
  batch: LayerBatch,
  x: Float32Array,
  calib: Float32Array,
  routing: Routing,
  scores: Float32Array | null,
): Promise<void> {
  const { ctx, L } = run;
  if (device.kind !== "cuda") throw new Error("unreachable");
  const cu = cudaKernels(device.index);
  const H = run.spec.hiddenSize;
  const rows = routing.rows;
  const t0 = performance.now();
  const plan = rowPlan(calib, rows, routing.numExperts, batch.experts);
  let scales: Float32Array | null = null;
  if (scores) {
    scales = new Float32Array(plan.index.length);
    batch.experts.forEach((e, i) => {
      const used = plan.index.subarray(plan.offsets[i], plan.offsets[i + 1]);
      const s = inputScales(routing, scores, e, Array.from(used));
      if (s) scales?.set(s, plan.offsets[i]);
    });
  }
  const dx = cu.cudaAlloc(rows * H * 4, device.index);
  const o = ctx.options;
  const options = { bits: o.bits, groupSize: o.groupSize, symmetric: o.symmetric, actOrder: o.actOrder, damp: o.damp };
  const chunks = expertChunks(batch, batchBytes(ctx));
  const times = { weights: 0, statistics: 0, handOff: 0 };
  try {
    cu.cudaUpload(dx, x);
    const tUp = performance.now();
    for (const [c, chunk] of chunks.entries()) {
      // at most two chunks' stacks alive: the one being built and the one being quantized
      if (c >= 2) await quantized(ctx, L, [...chunks[c - 2].gate, ...chunks[c - 2].up, ...chunks[c - 2].down]);
      const from = batch.experts.indexOf(chunk.experts[0]);
      const chunkPlan = slicePlan(plan, from, from + chunk.experts.length);
      const chunkScales = scales?.subarray(plan.offsets[from], plan.offsets[from + chunk.experts.length]) ?? null;
      let weights: DeviceWeights | undefined;
      let stats: DeviceStatistics | undefined;
      try {
        const t1 = performance.now();
        weights = uploadExpertWeights(cu, device.index, ctx, chunk, run.descs);
        const t2 = performance.now();
        stats = await deviceMoeStatistics(cu, { x: dx, rows }, chunk, chunkPlan, chunkScales, weights, L);
        const t3 = performance.now();
        cudaStore ??= await CudaTensorStore.open(ctx.bus, ctx.runId);
        await handOff(ctx, cudaStore, L, chunk, chunkPlan, stats, weights, options);
        times.weights += t2 - t1;
        times.statistics += t3 - t2;
        times.handOff += performance.now() - t3;
      } finally {
        // the store holds its own views of what it handed off; these are this function's handles
        if (weights) for (const b of [weights.gateUp, weights.down]) cu.cudaFree(b);
        if (stats) for (const b of [stats.hIn, stats.hDown]) cu.cudaFree(b);
      }
    }
    const s = (ms: number) => (ms / 1000).toFixed(2);
    ctx.say(
      `layer ${L}: ${batch.experts.length} experts on ${device.index === 0 ? "cuda" : `cuda:${device.index}`} in ${chunks.length} chunk(s): x upload ${s(tUp - t0)} s, weights ${s(times.weights)} s, statistics ${s(times.statistics)} s, hand-off ${s(times.handOff)} s`,
    );
  } finally {
    cu.cudaFree(dx);
  }
}

/** GPU bytes a batch of expert stacks may take (calibrator stage option `batchBytes`, default 32 GiB). */
function batchBytes(ctx: StageContext): number {
  const v = ctx.stageOptions.batchBytes ?? 32 * 2 ** 30;
  if (typeof v !== "number" || !(v > 0))
    throw new StageError({
      stage: ctx.stage,
      message: `calibrator option batchBytes: expected a positive number of bytes, got ${JSON.stringify(v)}`,
      permanent: true,
    });
  return v;
}

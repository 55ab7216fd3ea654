// `quantize-batch` work (--device cuda): GPTQ of every expert of one (layer, projection kind) in one
// cudaGptqBatched call on the stacks the calibrator left in GPU memory (cuda descriptors; gate and
// up rows share their expert's Hessian, so one factorisation serves both). The outputs are the
// per-expert files and ExpertQuantized events of the per-projection path, so the packer and the
// evaluator see no difference: codes, scales (quantization order), zeros and g_idx per (expert,
// projection), loss = tr((W−Q)·H·(W−Q)ᵀ) over that projection's rows with H = 2/Σw·Σ w·xxᵀ.
// Experts without calibration tokens get RTN (their weights downloaded), as on the CPU path.
import { PermanentFailure } from "@moeq/bus";
import { QuantizeBatchWork, validate, type WorkItem } from "@moeq/contracts";
import { type CudaBuffer, type CudaGptqResult, type CudaKernels, cudaKernels, parseDevice } from "@moeq/native";
import { quantizeIntRtn, type ScaleDtype } from "@moeq/quant";
import { type StageContext, StageError, telemetry as T, targetKey, writeFileAtomic } from "@moeq/runtime";
import { type CudaOpened, CudaTensorStore, DescriptorRejected } from "@moeq/store";
import { Result } from "effect";
import type { ItemTrace } from "./quantizer.ts";
import { scaleDtypeFor } from "./scale-dtype.ts";

export interface BatchOptions {
  bits: number;
  groupSize: number;
  symmetric: boolean;
  actOrder?: boolean;
  damp?: number;
}

let store: CudaTensorStore | undefined;

/** The projections of a batch that have no ExpertQuantized yet (a redelivered item redoes only those). */
export function pendingProjections(p: QuantizeBatchWork, done: (key: string) => boolean) {
  return p.experts.flatMap((e) =>
    e.projections
      .filter((q) => !done(targetKey({ layer: p.layer, expert: e.expert, proj: q.proj })))
      .map((q) => ({ expert: e, projection: q })),
  );
}

export async function quantizeBatch(ctx: StageContext, item: WorkItem, working: () => void, trace: ItemTrace = {}) {
  const v = validate(QuantizeBatchWork, item.payload, `work ${item.id}`);
  if (Result.isFailure(v)) throw new PermanentFailure({ tag: "InvalidMessage", message: v.failure.message });
  const p = v.success;
  const name = `layer ${p.layer} ${p.group}`;
  const [E, R, C] = p.weight.shape;
  if (p.weight.shape.length !== 3 || p.hessian.shape.join() !== [E, C, C].join() || p.experts.length !== E)
    throw new StageError({
      stage: ctx.stage,
      message: `${name}: weight [${p.weight.shape}], hessian [${p.hessian.shape}] and ${p.experts.length} experts do not form a batch`,
      permanent: true,
    });
  store ??= await CudaTensorStore.open(ctx.bus, ctx.runId);
  const todo = pendingProjections(p, (k) => ctx.has(`ExpertQuantized/${k}`));
  if (todo.length === 0) {
    // a redelivery after the work was done: hand the producer its memory back
    await Promise.all([store.releaseUnopened(p.weight), store.releaseUnopened(p.hessian)]);
    return;
  }
  const queueWaitMs = trace.publishedAtMs === undefined ? undefined : Math.max(0, Date.now() - trace.publishedAtMs);
  const work = { layer: p.layer, proj: p.group, algorithm: p.algorithm, queueWaitMs };
  await T.projectionSpan("quantize", work, (span) => runBatch(ctx, p, name, [E, R, C], todo, working, span), {
    traceparent: trace.traceparent,
  });
}

async function openBoth(
  s: CudaTensorStore,
  p: QuantizeBatchWork,
  name: string,
): Promise<[CudaOpened, CudaOpened] | null> {
  let w: CudaOpened | undefined;
  try {
    w = await s.open(p.weight, { source: `${name} weight` });
    return [w, await s.open(p.hessian, { source: `${name} hessian` })];
  } catch (e) {
    await w?.release();
    // the producing calibrator is gone (SIGKILL): its resumed run recomputes the layer and
    // publishes a new batch; this one can only be dropped
    if (e instanceof DescriptorRejected && e.reason === "missing") return null;
    throw e;
  }
}

async function runBatch(
  ctx: StageContext,
  p: QuantizeBatchWork,
  name: string,
  [E, R, C]: number[],
  todo: ReturnType<typeof pendingProjections>,
  working: () => void,
  span: T.Span,
) {
  const s = store;
  if (!s) throw new Error("unreachable");
  const d = parseDevice(ctx.options.device ?? "cpu");
  if (d.kind !== "cuda" || p.weight.loc.kind !== "cuda" || p.hessian.loc.kind !== "cuda")
    throw new StageError({
      stage: ctx.stage,
      message: `${name}: a batched work item needs --device cuda and cuda descriptors (got ${p.weight.loc.kind} on ${ctx.options.device ?? "cpu"})`,
      permanent: true,
    });
  const cu = cudaKernels(d.index);
  const o = p.options as unknown as BatchOptions;
  const opened = await openBoth(s, p, name);
  if (!opened) {
    // reclaim the dead producer's leases (nothing will map those handles again)
    await Promise.all([s.releaseUnopened(p.weight), s.releaseUnopened(p.hessian)]);
    ctx.say(`${name}: its producer is gone (stale descriptors); the resumed calibrator republishes it`);
    return;
  }
  const [ow, oh] = opened;
  const t0 = performance.now();
  try {
    const w = ow.tensor.buffer;
    const scaleDtype = scaleDtypeFor(ctx.options.format, p.weightDtype);
    const g = await batchedGptq(cu, w, oh.tensor.buffer, p.experts, R, C, o, scaleDtype, working);
    const { r, rowLoss, nG, codes, scales, zeros } = g;
    const tGptq = t0 + g.gptqMs;
    const tDown = performance.now();
    const host = await ctx.host();
    const out = (base: string, suffix: string, dtype: "u8" | "f32" | "i32", shape: number[], data: ArrayBufferView) =>
      host.output(`${base}.${suffix}`, dtype, shape, data, writeFileAtomic);
    const slot = new Map(p.experts.map((e, i) => [e.expert, i]));
    // outputs written concurrently; events appended one at a time (the log takes appends at its
    // last sequence: hundreds of concurrent appends from one process would only contend)
    const written = await Promise.all(
      todo.map(async ({ expert: e, projection: q }) => {
        const tE = performance.now();
        const i = slot.get(e.expert) ?? -1;
        const rows = q.rows;
        let res: { codes: Uint8Array; scales: Float32Array; zeros: Int32Array; gIdx: Int32Array };
        let loss = 0;
        if (e.fallback) {
          const wh = new Float32Array(rows * C);
          cu.cudaDownload(w, wh, (i * R + q.rowStart) * C * 4);
          const rtn = quantizeIntRtn(wh, rows, C, {
            bits: o.bits,
            groupSize: o.groupSize,
            symmetric: o.symmetric,
            clip: "minmax",
            scaleDtype,
            name: q.tensor,
          });
          for (let j = 0; j < wh.length; j++) loss += (wh[j] - rtn.dequant[j]) ** 2;
          res = rtn;
        } else {
          const r0 = i * R + q.rowStart;
          res = {
            codes: codes.subarray(r0 * C, (r0 + rows) * C),
            scales: scales.subarray(r0 * nG, (r0 + rows) * nG),
            zeros: zeros.subarray(r0 * nG, (r0 + rows) * nG),
            gIdx: r.gIdx.subarray(i * C, (i + 1) * C),
          };
          for (let j = r0; j < r0 + rows; j++) loss += rowLoss[j];
        }
        const g = res.scales.length / rows;
        const base = `quant/L${p.layer}.E${e.expert}.${q.proj}`;
        const [c, sc, z, gi] = await Promise.all([
          out(base, "codes", "u8", [rows, C], res.codes),
          out(base, "scales", "f32", [rows, g], res.scales),
          out(base, "zeros", "i32", [rows, g], res.zeros),
          out(base, "g_idx", "i32", [C], res.gIdx),
        ]);
        const bytes = res.codes.byteLength + res.scales.byteLength + res.zeros.byteLength + res.gIdx.byteLength;
        return {
          e,
          q,
          loss,
          bytes,
          outputs: { codes: c, scales: sc, zeros: z, g_idx: gi },
          writeMs: performance.now() - tE,
        };
      }),
    );
    working();
    for (const { e, q, loss, bytes, outputs, writeMs } of written) {
      const algorithm = e.fallback ? "rtn" : "gptq";
      const attrs = {
        layer: p.layer,
        expert: e.expert,
        proj: q.proj,
        tokensRouted: e.tokens,
        weightMass: e.weightMass,
      };
      await T.projectionSpan("quantize", { ...attrs, algorithm, loss, bytes, computeMs: writeMs }, async () => {
        await ctx.pause();
        await ctx.emit({
          type: "ExpertQuantized",
          payload: {
            layer: p.layer,
            expert: e.expert,
            proj: q.proj,
            outputs,
            loss,
            algorithm,
            // one GPTQ call for the batch: each projection reports its share of it plus its own outputs
            seconds: (tGptq - t0) / 1000 / E + writeMs / 1000,
          },
        });
      });
    }
    ctx.say(`quantized ${written.length} projections of ${name} (batched)`);
    T.setWork(span, { computeMs: tGptq - t0, bytes: codes.byteLength });
    ctx.say(
      `${name}: ${E} experts × [${R}, ${C}] GPTQ ${((tGptq - t0) / 1000).toFixed(2)} s (factor ${r.seconds.factor.toFixed(2)}, sweep ${r.seconds.sweep.toFixed(2)}), loss + download ${((tDown - tGptq) / 1000).toFixed(2)} s, outputs + events ${((performance.now() - tDown) / 1000).toFixed(2)} s`,
    );
  } finally {
    await ow.release();
    await oh.release();
  }
}

/**
 * The device part of a batch: H scaled to GPTQ's 2/Σw into a copy (identity for experts without
 * tokens), one cudaGptqBatched call, the per-row losses, and codes / scales / zeros downloaded.
 */
export async function batchedGptq(
  cu: CudaKernels,
  w: CudaBuffer,
  rawH: CudaBuffer,
  experts: QuantizeBatchWork["experts"],
  R: number,
  C: number,
  o: BatchOptions,
  scaleDtype: ScaleDtype,
  working: () => void = () => undefined,
) {
  const E = experts.length;
  const t0 = performance.now();
  const held: CudaBuffer[] = [];
  try {
    // GPTQ's convention on a copy (the stacks belong to the calibrator; a redelivery must find them unchanged)
    const h = cu.cudaAlloc(E * C * C * 4, w.device);
    held.push(h);
    const k = Float64Array.from(experts, (e) => (e.weightMass > 0 ? 2 / e.weightMass : 0));
    cu.cudaScaleBlocksF32(rawH, h, E, C * C, k);
    // experts without tokens: identity Hessian (RTN replaces their codes; GPTQ must not see a zero matrix)
    const eye = new Float32Array(C * C);
    for (let i = 0; i < C; i++) eye[i * C + i] = 1;
    for (const [i, e] of experts.entries()) if (!(e.weightMass > 0)) cu.cudaUpload(h, eye, i * C * C * 4);
    working();
    const r = await cu.cudaGptqBatched(
      w,
      h,
      E,
      R,
      C,
      o.bits,
      o.groupSize,
      o.symmetric,
      o.actOrder ?? false,
      o.damp ?? 0.01,
      128,
      scaleDtype,
    );
    held.push(r.codes, r.scales, r.zeros, r.dequant);
    const gptqMs = performance.now() - t0;
    working();
    const rowLoss = rowLosses(cu, w, h, r, E, R, C);
    const nG = r.scales.bytes / 4 / (E * R);
    const codes = new Uint8Array(E * R * C);
    const scales = new Float32Array(E * R * nG);
    const zeros = new Int32Array(E * R * nG);
    cu.cudaDownload(r.codes, codes);
    cu.cudaDownload(r.scales, scales);
    cu.cudaDownload(r.zeros, zeros);
    return { r, rowLoss, nG, codes, scales, zeros, gptqMs };
  } finally {
    for (const b of held) cu.cudaFree(b);
  }
}

/** tr((W−Q)·H·(W−Q)ᵀ) per row of every expert: T = Q·H − W·H (two batched f32 GEMMs), then Σ T·Q − Σ T·W per row in f64. */
function rowLosses(
  cu: CudaKernels,
  w: CudaBuffer,
  h: CudaBuffer,
  r: CudaGptqResult,
  E: number,
  R: number,
  C: number,
): Float64Array {
  const t = cu.cudaAlloc(E * R * C * 4, w.device);
  try {
    cu.cudaGemmBatchedF32(r.dequant, h, t, R, C, C, E, false, false, 1, 0, "f32");
    cu.cudaGemmBatchedF32(w, h, t, R, C, C, E, false, false, -1, 1, "f32");
    const tq = cu.cudaRowDotF32(t, r.dequant, E * R, C);
    const tw = cu.cudaRowDotF32(t, w, E * R, C);
    return tq.map((v, i) => v - tw[i]);
  } finally {
    cu.cudaFree(t);
  }
}

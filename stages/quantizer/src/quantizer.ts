// The quantizer: a work-queue consumer (run as many replicas as cores allow, on any host that
// sees the work dir). One item = one projection of one expert: RTN, or GPTQ with the
// calibrator's Hessian. Outputs are unpacked codes, scales, zero points and the column → group
// map, written as tensor files; ExpertQuantized references them. Redelivered or duplicated
// items find their ExpertQuantized in the log and are acknowledged without redoing the work.
// Under --device cuda a MoE layer's routed experts come as two `quantize-batch` items instead
// (batch.ts: every expert of one projection kind in one batched GPTQ call on GPU-resident inputs).
import { QuantizeExpertWork, validate, type WorkItem } from "@moeq/contracts";
import { tensorToF32 } from "@moeq/models";
import { deviceKernels, parseDevice } from "@moeq/native";
import { gptq, quantizeIntRtn, type IntQuantResult } from "@moeq/quant";
import { isPermanentError, type StageContext, StageError, targetKey, telemetry as T, writeFileAtomic } from "@moeq/runtime";
import { PermanentFailure } from "@moeq/bus";
import { Result } from "effect";
import { quantizeBatch } from "./batch.ts";
import { scaleDtypeFor } from "./scale-dtype.ts";
import { quantizeFloat } from "./float-scheme.ts";
import { isFloatScheme } from "@moeq/runtime";

interface QuantizeOptions {
  bits: number;
  groupSize: number;
  symmetric: boolean;
  actOrder?: boolean;
  damp?: number;
  hessianWeight?: number;
  rows: number;
  cols: number;
  tensor?: string;
}

/** Where the item came from: its producer's span (the calibrator's `calibrate`) and when it was queued. */
export interface ItemTrace {
  readonly traceparent?: string;
  readonly publishedAtMs?: number;
}

export async function quantizeItem(ctx: StageContext, item: WorkItem, working: () => void, trace: ItemTrace = {}): Promise<void> {
  const v = validate(QuantizeExpertWork, item.payload, `work ${item.id}`);
  if (Result.isFailure(v)) throw new PermanentFailure({ tag: "InvalidMessage", message: v.failure.message });
  const p = v.success;
  const key = targetKey(p);
  if (ctx.has(`ExpertQuantized/${key}`)) return;
  const queueWaitMs = trace.publishedAtMs === undefined ? undefined : Math.max(0, Date.now() - trace.publishedAtMs);
  const work = { layer: p.layer, expert: p.expert, proj: p.proj, algorithm: p.algorithm, queueWaitMs };
  await T.projectionSpan("quantize", work, (span) => quantizeValid(ctx, p, key, working, span), { traceparent: trace.traceparent });
}

async function quantizeValid(ctx: StageContext, p: typeof QuantizeExpertWork.Type, key: string, working: () => void, span: T.Span): Promise<void> {
  const o = p.options as unknown as QuantizeOptions;
  const name = o.tensor ?? key;
  const [rows, cols] = p.weight.shape;
  if (p.weight.shape.length !== 2 || rows !== o.rows || cols !== o.cols)
    throw new StageError({ stage: ctx.stage, message: `${name}: weight shape [${p.weight.shape}] does not match [${o.rows}, ${o.cols}]`, permanent: true });
  const t0 = Date.now();
  // On another host, `file` inputs come through the object store (HostTensors); here, as they are.
  const host = await ctx.host();
  const float = isFloatScheme(ctx.options.scheme);
  const [weight, hessian] = await Promise.all([
    host.readable(p.weight, `${name} weight`),
    p.algorithm === "gptq" && !float ? host.readable(p.hessian, `${name} hessian`) : undefined,
  ]);
  const w = Float32Array.from(tensorToF32(ctx.reader.tensor(weight, `${name} weight`), name));
  if (float) return quantizeFloatItem(ctx, p, key, name, w, span, t0);
  // scales are rounded to the dtype the target checkpoint stores them in, before codes are chosen
  const scaleDtype = scaleDtypeFor(ctx.options.format, p.weight.dtype);
  let res: IntQuantResult;
  let loss: number;
  if (p.algorithm === "gptq") {
    const h = ctx.reader.f32(hessian!, `${name} hessian`);
    working();
    const g = await gptq(w, rows, cols, h, {
      bits: o.bits,
      groupSize: o.groupSize,
      symmetric: o.symmetric,
      actOrder: o.actOrder ?? false,
      damp: o.damp ?? 0.01,
      hessianWeight: o.hessianWeight,
      scaleDtype,
      name,
      kernel: deviceKernels(parseDevice(ctx.options.device ?? "cpu")).gptqQuantize,
    });
    res = g;
    loss = g.loss;
  } else if (p.algorithm === "rtn") {
    res = quantizeIntRtn(w, rows, cols, { bits: o.bits, groupSize: o.groupSize, symmetric: o.symmetric, clip: "minmax", scaleDtype, name });
    loss = 0;
    for (let i = 0; i < w.length; i++) loss += (w[i] - res.dequant[i]) ** 2;
  } else throw new StageError({ stage: ctx.stage, message: `${name}: unknown algorithm ${p.algorithm}`, permanent: true });
  const nG = res.scales.length / rows;
  const base = `quant/L${p.layer}.E${p.expert}.${p.proj}`;
  // Outputs land in the work dir's tensors/quant/ whichever host ran the item (imported by the
  // home host from elsewhere), so ExpertQuantized always names files the packer can read.
  const out = (suffix: string, dtype: "u8" | "f32" | "i32", shape: number[], data: ArrayBufferView) =>
    host.output(`${base}.${suffix}`, dtype, shape, data, writeFileAtomic);
  const [codes, scales, zeros, g_idx] = await Promise.all([
    out("codes", "u8", [rows, cols], res.codes),
    out("scales", "f32", [rows, nG], res.scales),
    out("zeros", "i32", [rows, nG], res.zeros),
    out("g_idx", "i32", [cols], res.gIdx),
  ]);
  const outputs = { codes, scales, zeros, g_idx };
  T.setWork(span, { loss, bytes: res.codes.byteLength + res.scales.byteLength + res.zeros.byteLength + res.gIdx.byteLength });
  await ctx.pause();
  await ctx.emit({
    type: "ExpertQuantized",
    payload: { layer: p.layer, expert: p.expert, proj: p.proj, outputs, loss, algorithm: p.algorithm, seconds: (Date.now() - t0) / 1000 },
  });
  ctx.say(`quantized ${key} (${p.algorithm})`);
}

async function quantizeFloatItem(
  ctx: StageContext,
  p: typeof QuantizeExpertWork.Type,
  key: string,
  name: string,
  w: Float32Array,
  span: T.Span,
  t0: number,
): Promise<void> {
  const [rows, cols] = p.weight.shape;
  const o = p.options as unknown as QuantizeOptions;
  const scheme = ctx.options.scheme;
  let q: Awaited<ReturnType<typeof quantizeFloat>>;
  try {
    q = await quantizeFloat(ctx, scheme, w, rows, cols, { layer: p.layer, expert: p.expert, proj: p.proj, tensor: o.tensor, name });
  } catch (e) {
    throw new StageError({ stage: ctx.stage, message: `${name}: ${scheme}: ${(e as Error).message}`, permanent: true });
  }
  let loss = 0;
  for (let i = 0; i < w.length; i++) loss += (w[i] - q.dequant[i]) ** 2;
  const host = await ctx.host();
  const base = `quant/L${p.layer}.E${p.expert}.${p.proj}`;
  const out = (suffix: string, dtype: "u8" | "f32", shape: number[], data: ArrayBufferView) =>
    host.output(`${base}.${suffix}`, dtype, shape, data, writeFileAtomic);
  const [codes, scales, dequant, global] = await Promise.all([
    out("codes", "u8", [rows, cols], q.codes),
    out("scales", q.scales instanceof Float32Array ? "f32" : "u8", q.scaleShape, q.scales),
    out("dequant", "f32", [rows, cols], q.dequant),
    q.globalScale === undefined ? undefined : out("global_scale", "f32", [1], Float32Array.of(q.globalScale)),
  ]);
  const outputs = { codes, scales, dequant, ...(global ? { global_scale: global } : {}) };
  T.setWork(span, { loss, bytes: q.codes.byteLength + q.scales.byteLength });
  await ctx.pause();
  await ctx.emit({
    type: "ExpertQuantized",
    payload: { layer: p.layer, expert: p.expert, proj: p.proj, outputs, loss, algorithm: scheme, seconds: (Date.now() - t0) / 1000 },
  });
  ctx.say(`quantized ${key} (${scheme})`);
}

export async function runQuantizer(ctx: StageContext): Promise<void> {
  await ctx.queues.consume(
    "quantize",
    async (item, wctx) => {
      try {
        if (item.kind === "quantize-batch") await quantizeBatch(ctx, item, wctx.working, wctx);
        else await quantizeItem(ctx, item, wctx.working, wctx);
      } catch (e) {
        if (isPermanentError(e) || e instanceof PermanentFailure) {
          const error = { tag: (e as { _tag?: string })._tag ?? "Error", message: (e as Error).message };
          await ctx.emit({ type: "RunFailed", payload: { stage: ctx.stage, error } }).catch(() => undefined);
          throw e instanceof PermanentFailure ? e : new PermanentFailure({ tag: error.tag, message: error.message });
        }
        throw e;
      }
    },
    { heartbeatMs: 5000, onRetry: (item, e) => ctx.say(`retrying ${item.id}: ${(e as Error).message}`) },
  );
  ctx.say("consuming quantize work");
  await new Promise<never>(() => undefined);
}

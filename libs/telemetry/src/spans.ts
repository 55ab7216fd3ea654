// Span helpers that make instrumentation one line per span in a stage. With tracing off they call
// `fn` directly with a shared non-recording span: no span object, no context switch, no clock read.
import { performance } from "node:perf_hooks";
import {
  type Attributes,
  type Context,
  context,
  type HrTime,
  INVALID_SPAN_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { Clock } from "effect";
import { Attr, type Operation, SpanNames, type WorkAttributes, workAttributes } from "./attributes.ts";
import { contextFromTraceparent, extractTraceContext, type TraceHeaderReader } from "./propagation.ts";
import { activeTelemetry } from "./telemetry.ts";

export type { Span };
export { SpanKind };

/** What `fn` gets when tracing is off; every method is a no-op. */
export const NOOP_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

export interface SpanOptions {
  readonly kind?: SpanKind;
  /** Parent context (default: the active one). */
  readonly parent?: Context;
  /** Continue the trace in these message headers (their span becomes the parent). Wins over `parent`. */
  readonly headers?: TraceHeaderReader;
  /**
   * Continue the trace of a `traceparent` string (what @moeq/bus hands a work-queue consumer as
   * `delivery.traceparent`). Wins over `parent` and `headers`.
   */
  readonly traceparent?: string;
  readonly tracestate?: string;
  /** Record the wall time of `fn` as `moeq.compute_ms` unless `fn` set it. */
  readonly computeTime?: boolean;
}

// The SDK stamps a span's start with Date.now() (millisecond steps) and its end with start +
// performance.now() elapsed, so a child can seem to outlive its parent by up to 1 ms. Both ends are
// taken from Effect's default clock instead (wall-anchored process.hrtime), the clock Effect.withSpan
// spans use, so plain and Effect spans nest exactly.
const clock = Clock.Clock.defaultValue();
const NS_PER_S = 1_000_000_000n;
function nowHr(): HrTime {
  const ns = clock.currentTimeNanosUnsafe();
  return [Number(ns / NS_PER_S), Number(ns % NS_PER_S)];
}

function start(name: string, attrs: Attributes | undefined, o: SpanOptions | undefined) {
  const t = activeTelemetry()!;
  let parent = o?.parent ?? context.active();
  if (o?.headers) parent = extractTraceContext(o.headers, parent);
  if (o?.traceparent) parent = contextFromTraceparent(o.traceparent, o.tracestate, parent);
  const span = t.tracer.startSpan(
    name,
    { kind: o?.kind ?? SpanKind.INTERNAL, startTime: nowHr(), ...(attrs ? { attributes: attrs } : {}) },
    parent,
  );
  return { span, ctx: trace.setSpan(parent, span), t0: o?.computeTime ? performance.now() : 0 };
}

function fail(span: Span, e: unknown): void {
  const err = e instanceof Error ? e : new Error(String(e));
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
}

function finish(span: Span, t0: number, o: SpanOptions | undefined): void {
  if (o?.computeTime && !(Attr.computeMs in ((span as unknown as { attributes?: Attributes }).attributes ?? {})))
    span.setAttribute(Attr.computeMs, performance.now() - t0);
  span.end(nowHr());
}

/**
 * Runs `fn` inside a span named `name` (child of the active span, or of `o.headers`'s span). A
 * thrown error or rejection is recorded on the span (status ERROR) and rethrown.
 */
export async function withSpan<T>(
  name: string,
  attrs: Attributes | undefined,
  fn: (span: Span) => T | Promise<T>,
  o?: SpanOptions,
): Promise<T> {
  if (activeTelemetry() === undefined) return fn(NOOP_SPAN);
  const { span, ctx, t0 } = start(name, attrs, o);
  try {
    return await context.with(ctx, fn, undefined, span);
  } catch (e) {
    fail(span, e);
    throw e;
  } finally {
    finish(span, t0, o);
  }
}

/** withSpan for synchronous work. */
export function withSpanSync<T>(
  name: string,
  attrs: Attributes | undefined,
  fn: (span: Span) => T,
  o?: SpanOptions,
): T {
  if (activeTelemetry() === undefined) return fn(NOOP_SPAN);
  const { span, ctx, t0 } = start(name, attrs, o);
  try {
    return context.with(ctx, fn, undefined, span);
  } catch (e) {
    fail(span, e);
    throw e;
  } finally {
    finish(span, t0, o);
  }
}

/** Adds work attributes (loss, bytes, ... known only at the end) to a span. */
export function setWork(span: Span, w: WorkAttributes): void {
  if (span !== NOOP_SPAN) span.setAttributes(workAttributes(w));
}

/** The run's root span (the supervisor). Spawn stages inside it with `traceEnv()` in their env. */
export function runSpan<T>(runId: string, fn: (span: Span) => T | Promise<T>): Promise<T> {
  return withSpan(SpanNames.run, { [Attr.runId]: runId }, fn);
}

/**
 * The stage's span, named after the stage, child of the run span this process was spawned under
 * (TRACEPARENT in its env) unless another parent is active.
 */
export function stageSpan<T>(fn: (span: Span) => T | Promise<T>): Promise<T> {
  const t = activeTelemetry();
  if (t === undefined) return withSpan("stage", undefined, fn);
  const parent = trace.getSpan(context.active()) ? context.active() : t.processParent;
  return withSpan(t.serviceName, { [Attr.runId]: t.runId, [Attr.stage]: t.serviceName }, fn, { parent });
}

export function layerSpan<T>(layer: number, fn: (span: Span) => T | Promise<T>, o?: SpanOptions): Promise<T> {
  return withSpan(SpanNames.layer, { [Attr.layer]: layer }, fn, o);
}

export function expertSpan<T>(
  layer: number,
  expert: number,
  fn: (span: Span) => T | Promise<T>,
  o?: SpanOptions,
): Promise<T> {
  return withSpan(SpanNames.expert, { [Attr.layer]: layer, [Attr.expert]: expert }, fn, o);
}

/**
 * One (layer, expert, projection) operation: a span named `op` with the work attributes and
 * `moeq.compute_ms`. In a consumer, pass the message headers as `o.headers` (or the delivery's
 * `traceparent` as `o.traceparent`) so the span is a CONSUMER child of the producer's span, and
 * `queueWaitMs` (publish → receive) in `w`.
 */
export function projectionSpan<T>(
  op: Operation,
  w: WorkAttributes,
  fn: (span: Span) => T | Promise<T>,
  o?: SpanOptions,
): Promise<T> {
  if (activeTelemetry() === undefined) return withSpan(op, undefined, fn);
  return withSpan(op, workAttributes(w), fn, {
    computeTime: true,
    ...(o?.headers || o?.traceparent ? { kind: SpanKind.CONSUMER } : {}),
    ...o,
  });
}

// W3C trace context (`traceparent`, `tracestate`) in and out of NATS headers, plain strings (the bus
// API's `traceparent` option) and process environments (TRACEPARENT/TRACESTATE, for child processes).
import { type Context, context, ROOT_CONTEXT, type TextMapGetter, type TextMapSetter, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

/** The read side of a headers object: NATS `MsgHdrs` (returns "" when absent), `Headers`, a Map. */
export interface TraceHeaderReader {
  get(name: string): string | null | undefined;
}
/** The write side: NATS `headers()`, `Headers`, a Map. */
export interface TraceHeaderWriter {
  set(name: string, value: string): unknown;
}

const w3c = new W3CTraceContextPropagator();
const KEYS = ["traceparent", "tracestate"];

const headerGetter: TextMapGetter<TraceHeaderReader> = {
  keys: () => KEYS,
  get: (h, k) => h.get(k) || undefined,
};
const headerSetter: TextMapSetter<TraceHeaderWriter> = {
  set: (h, k, v) => {
    h.set(k, v);
  },
};

/**
 * Writes the current span's (or `ctx`'s) trace context into `headers` and returns them. Writes
 * nothing when there is no valid span context, e.g. with tracing off.
 */
export function injectTraceHeaders<H extends TraceHeaderWriter>(headers: H, ctx: Context = context.active()): H {
  w3c.inject(ctx, headers, headerSetter);
  return headers;
}

/**
 * A context whose parent is the remote span named by `headers` (on top of `base`, default the
 * active context). Missing or malformed headers give `base` unchanged, so the span started under it
 * is a local child or a new root, never an error.
 */
export function extractTraceContext(headers: TraceHeaderReader | undefined, base: Context = context.active()): Context {
  if (headers === undefined) return base;
  return w3c.extract(base, headers, headerGetter);
}

/** `traceparent` of the current span (or `ctx`'s), for APIs that carry it as a string. */
export function currentTraceparent(ctx: Context = context.active()): string | undefined {
  const m = new Map<string, string>();
  injectTraceHeaders(m, ctx);
  return m.get("traceparent");
}

/** A context continuing the trace in a `traceparent` string (and optional `tracestate`). */
export function contextFromTraceparent(
  traceparent: string | undefined,
  tracestate?: string,
  base: Context = context.active(),
): Context {
  if (!traceparent) return base;
  const m = new Map<string, string>([["traceparent", traceparent]]);
  if (tracestate) m.set("tracestate", tracestate);
  return extractTraceContext(m, base);
}

/** A process environment as a carrier: `traceparent` ↔ `TRACEPARENT`. */
export function envCarrier(env: Readonly<Record<string, string | undefined>>): TraceHeaderReader {
  return { get: (k) => env[k.toUpperCase()] };
}

/** `{ TRACEPARENT, TRACESTATE }` of the current span, to merge into a child process's env. */
export function traceEnv(ctx: Context = context.active()): Record<string, string> {
  const m = new Map<string, string>();
  injectTraceHeaders(m, ctx);
  const out: Record<string, string> = {};
  for (const [k, v] of m) out[k.toUpperCase()] = v;
  return out;
}

/** True when `ctx` holds a valid span context (local or remote). */
export const hasSpanContext = (ctx: Context): boolean => trace.getSpanContext(ctx) !== undefined;

export { ROOT_CONTEXT };

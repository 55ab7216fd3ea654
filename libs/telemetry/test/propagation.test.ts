import { headers as natsHeaders } from "@nats-io/transport-node";
import { ROOT_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import {
  contextFromTraceparent,
  currentTraceparent,
  envCarrier,
  extractTraceContext,
  injectTraceHeaders,
  traceEnv,
} from "../src/index.ts";

// The examples of the W3C Trace Context recommendation (§3.2 traceparent, §3.3 tracestate).
const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const SPAN_ID = "b7ad6b7169203331";
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;
const TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

describe("W3C trace context over NATS headers", () => {
  it("extracts traceparent and tracestate from real NATS message headers as a remote parent", () => {
    const h = natsHeaders();
    h.set("traceparent", TRACEPARENT);
    h.set("tracestate", TRACESTATE);
    const sc = trace.getSpanContext(extractTraceContext(h, ROOT_CONTEXT));
    expect(sc).toBeDefined();
    expect(sc!.traceId).toBe(TRACE_ID);
    expect(sc!.spanId).toBe(SPAN_ID);
    expect(sc!.traceFlags).toBe(TraceFlags.SAMPLED);
    expect(sc!.isRemote).toBe(true);
    expect(sc!.traceState?.get("congo")).toBe("t61rcWkgMzE");
    expect(sc!.traceState?.get("rojo")).toBe("00f067aa0ba902b7");
  });

  it("injects the exact header strings into NATS headers, keeping the not-sampled flag", () => {
    const ctx = contextFromTraceparent(`00-${TRACE_ID}-${SPAN_ID}-00`, TRACESTATE, ROOT_CONTEXT);
    const h = injectTraceHeaders(natsHeaders(), ctx);
    expect(h.get("traceparent")).toBe(`00-${TRACE_ID}-${SPAN_ID}-00`);
    expect(h.get("tracestate")).toBe(TRACESTATE);
  });

  it("ignores missing and malformed headers (the span becomes a local child or a root)", () => {
    const bad = [
      "",
      `ff-${TRACE_ID}-${SPAN_ID}-01`, // version ff is forbidden
      `00-${"0".repeat(32)}-${SPAN_ID}-01`, // all-zero trace id
      `00-${TRACE_ID}-${"0".repeat(16)}-01`, // all-zero parent id
      `00-${TRACE_ID.slice(1)}-${SPAN_ID}-01`, // short trace id
      `00-${TRACE_ID}-${SPAN_ID}`, // no flags
      "garbage",
    ];
    for (const tp of bad) {
      const h = natsHeaders();
      if (tp) h.set("traceparent", tp);
      expect(trace.getSpanContext(extractTraceContext(h, ROOT_CONTEXT)), tp).toBeUndefined();
    }
    expect(extractTraceContext(undefined, ROOT_CONTEXT)).toBe(ROOT_CONTEXT);
  });

  it("writes nothing when there is no span context", () => {
    const h = injectTraceHeaders(natsHeaders(), ROOT_CONTEXT);
    expect(h.has("traceparent")).toBe(false);
    expect(currentTraceparent(ROOT_CONTEXT)).toBeUndefined();
  });

  it("round-trips through strings (the bus API) and process environments (TRACEPARENT/TRACESTATE)", () => {
    const ctx = contextFromTraceparent(TRACEPARENT, TRACESTATE, ROOT_CONTEXT);
    expect(currentTraceparent(ctx)).toBe(TRACEPARENT);
    const env = traceEnv(ctx);
    expect(env).toEqual({ TRACEPARENT, TRACESTATE });
    const back = trace.getSpanContext(extractTraceContext(envCarrier(env), ROOT_CONTEXT));
    expect(back).toMatchObject({ traceId: TRACE_ID, spanId: SPAN_ID, isRemote: true });
    expect(traceEnv(ROOT_CONTEXT)).toEqual({});
  });
});

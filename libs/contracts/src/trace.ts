import { randomBytes } from "node:crypto";

// W3C trace context (https://www.w3.org/TR/trace-context/): version-traceid-parentid-flags.
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export interface TraceContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
}

export function parseTraceparent(header: string | undefined): TraceContext | undefined {
  const m = header === undefined ? null : TRACEPARENT.exec(header.trim());
  if (!m || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return undefined;
  return { traceId: m[1], spanId: m[2], sampled: (Number.parseInt(m[3], 16) & 1) === 1 };
}

export function formatTraceparent(t: TraceContext): string {
  return `00-${t.traceId}-${t.spanId}-${t.sampled ? "01" : "00"}`;
}

/** A new root trace (a run), or a child span of `parent` in the same trace. */
export function childTraceparent(parent?: string): string {
  const p = parseTraceparent(parent);
  const spanId = randomBytes(8).toString("hex");
  return formatTraceparent({
    traceId: p?.traceId ?? randomBytes(16).toString("hex"),
    spanId,
    sampled: p?.sampled ?? true,
  });
}

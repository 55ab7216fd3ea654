// ReadableSpan[] → one OTLP/JSON ExportTraceServiceRequest, following the OTLP JSON encoding rules
// (opentelemetry-proto docs/specification.md "JSON Protobuf Encoding"): lowerCamelCase field names,
// trace and span ids as lower-case hex (not base64), enums as integers, 64-bit integers (timestamps,
// intValue) as decimal strings, bytes as base64, non-finite doubles as "NaN"/"Infinity"/"-Infinity".
// Written here rather than taken from @opentelemetry/otlp-transformer's JSON serializer, which
// writes intValue as a JSON number and non-finite doubles as null. Plain objects and one
// JSON.stringify measured faster than building the text by hand.
import type { Attributes, AttributeValue, HrTime } from "@opentelemetry/api";
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base";

export type OtlpAnyValue =
  | { stringValue: string }
  | { boolValue: boolean }
  | { intValue: string }
  | { doubleValue: number | string }
  | { bytesValue: string }
  | { arrayValue: { values: OtlpAnyValue[] } }
  | Record<string, never>;

export interface OtlpKeyValue {
  key: string;
  value: OtlpAnyValue;
}

// [seconds, nanoseconds] → "<seconds><9-digit nanoseconds>": exact without BigInt arithmetic.
const nanos = (t: HrTime): string => `${Math.trunc(t[0])}${String(Math.trunc(t[1])).padStart(9, "0")}`;

function anyValue(v: AttributeValue | undefined | null | Uint8Array): OtlpAnyValue {
  switch (typeof v) {
    case "string":
      return { stringValue: v };
    case "boolean":
      return { boolValue: v };
    case "number":
      // Same typing rule as the SDK's protobuf path, so the file and the collector agree.
      if (Number.isSafeInteger(v)) return { intValue: String(v) };
      if (Number.isInteger(v) && Math.abs(v) < 2 ** 63) return { intValue: BigInt(v).toString() };
      return { doubleValue: Number.isFinite(v) ? v : Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity" };
  }
  if (v instanceof Uint8Array) return { bytesValue: Buffer.from(v).toString("base64") };
  if (Array.isArray(v)) return { arrayValue: { values: v.map((x) => anyValue(x)) } };
  return {};
}

export function keyValues(a: Attributes): OtlpKeyValue[] {
  const out: OtlpKeyValue[] = [];
  for (const key of Object.keys(a)) out.push({ key, value: anyValue(a[key]) });
  return out;
}

// OTLP span flags: low byte = W3C trace flags, bit 8 = "has is_remote", bit 9 = "parent is remote".
const spanFlags = (traceFlags: number, parentRemote: boolean | undefined) =>
  (traceFlags & 0xff) | 0x100 | (parentRemote ? 0x200 : 0);

function otlpSpan(s: ReadableSpan) {
  const ctx = s.spanContext();
  const parent = s.parentSpanContext;
  return {
    traceId: ctx.traceId,
    spanId: ctx.spanId,
    // undefined members are left out by JSON.stringify (cheaper than spreading optional objects).
    traceState: ctx.traceState?.serialize(),
    parentSpanId: parent?.spanId || undefined,
    flags: spanFlags(ctx.traceFlags, parent?.isRemote),
    name: s.name,
    // SpanKind in the API starts at INTERNAL = 0; OTLP reserves 0 for UNSPECIFIED.
    kind: s.kind + 1,
    startTimeUnixNano: nanos(s.startTime),
    endTimeUnixNano: nanos(s.endTime),
    attributes: keyValues(s.attributes),
    droppedAttributesCount: s.droppedAttributesCount,
    events: s.events.map((e) => ({
      timeUnixNano: nanos(e.time),
      name: e.name,
      attributes: keyValues(e.attributes ?? {}),
      droppedAttributesCount: e.droppedAttributesCount ?? 0,
    })),
    droppedEventsCount: s.droppedEventsCount,
    links: s.links.map((l) => ({
      traceId: l.context.traceId,
      spanId: l.context.spanId,
      traceState: l.context.traceState?.serialize(),
      attributes: keyValues(l.attributes ?? {}),
      droppedAttributesCount: l.droppedAttributesCount ?? 0,
      flags: spanFlags(l.context.traceFlags, l.context.isRemote),
    })),
    droppedLinksCount: s.droppedLinksCount,
    status: { code: s.status.code, message: s.status.message || undefined },
  };
}

/** Groups spans by resource, then by instrumentation scope, as the OTLP request nests them. */
export function toOtlpJson(spans: readonly ReadableSpan[]) {
  const byResource = new Map<ReadableSpan["resource"], Map<string, ReadableSpan[]>>();
  for (const s of spans) {
    let scopes = byResource.get(s.resource);
    if (!scopes) {
      scopes = new Map();
      byResource.set(s.resource, scopes);
    }
    const key = `${s.instrumentationScope.name}\u0000${s.instrumentationScope.version ?? ""}\u0000${s.instrumentationScope.schemaUrl ?? ""}`;
    let list = scopes.get(key);
    if (!list) {
      list = [];
      scopes.set(key, list);
    }
    list.push(s);
  }
  return {
    resourceSpans: [...byResource].map(([resource, scopes]) => ({
      resource: { attributes: keyValues(resource.attributes), droppedAttributesCount: 0 },
      scopeSpans: [...scopes.values()].map((list) => {
        const scope = list[0].instrumentationScope;
        return {
          scope: { name: scope.name, ...(scope.version ? { version: scope.version } : {}) },
          spans: list.map(otlpSpan),
          ...(scope.schemaUrl ? { schemaUrl: scope.schemaUrl } : {}),
        };
      }),
      ...(resource.schemaUrl ? { schemaUrl: resource.schemaUrl } : {}),
    })),
  };
}

export type OtlpJsonRequest = ReturnType<typeof toOtlpJson>;

/** One ExportTraceServiceRequest as one line of JSON (no newline). */
export const otlpJsonLine = (spans: readonly ReadableSpan[]): string => JSON.stringify(toOtlpJson(spans));

import { Schema } from "effect";

// effect 4.1's JSON Schema output drops `isPattern` constraints, so every patterned string gets
// an identifier and json-schemas.ts re-inserts its pattern from this table.
export const patterns: Record<string, RegExp> = {};
export function patterned(identifier: string, re: RegExp, description?: string) {
  patterns[identifier] = re;
  return Schema.String.check(Schema.isPattern(re)).annotate({ identifier, ...(description ? { description } : {}) });
}

// Run ids become parts of NATS subjects, stream names, KV keys and /dev/shm names, so they are
// restricted to characters that are legal in all of them.
export const RunId = patterned(
  "RunId",
  /^[A-Za-z0-9_-]{1,64}$/,
  "1-64 characters of [A-Za-z0-9_-]; used in subjects, stream names and shm segment names",
);
export type RunId = typeof RunId.Type;

export const StageName = patterned(
  "StageName",
  /^[a-z][a-z0-9-]{0,63}$/,
  "stage process name, e.g. loader, calibrator, quantizer",
);

export const Sha256Hex = patterned("Sha256Hex", /^[0-9a-f]{64}$/, "lower-case hex SHA-256");

export const Traceparent = patterned(
  "Traceparent",
  /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/,
  "W3C trace context traceparent",
);

export const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)).annotate({
  identifier: "NonNegativeInt",
});

/** Raw bytes: msgpack `bin`. Decoded values are Uint8Array views into the received message. */
export const Bytes = Schema.Uint8Array.annotate({ identifier: "Bytes" });

export const isRunId = (s: string): boolean => /^[A-Za-z0-9_-]{1,64}$/.test(s);

/**
 * Deterministic id of a unit of work: `run/layer/expert/proj/stage` (absent parts are `-`).
 * It is the JetStream `Nats-Msg-Id`, so a retried publish of the same work is deduplicated.
 */
export function workId(parts: {
  runId: string;
  stage: string;
  layer?: number;
  expert?: number;
  proj?: string;
}): string {
  const p = (v: string | number | undefined) => (v === undefined ? "-" : String(v));
  return [parts.runId, p(parts.layer), p(parts.expert), p(parts.proj), parts.stage].join("/");
}

// Reads `--trace-file` output back into flat span records (tests, offline tools). Strict: every line
// must be an OTLP/JSON ExportTraceServiceRequest with hex ids and string-encoded nanos, otherwise
// TraceFileInvalid names the file, the line and the field.
import { readFileSync } from "node:fs";
import { errorText, TraceFileInvalid } from "./errors.ts";

export type AttributeValueRead = string | number | boolean | Uint8Array | AttributeValueRead[] | undefined;

export interface TraceFileSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** Undefined for a root span. */
  readonly parentSpanId: string | undefined;
  readonly name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly startTimeUnixNano: bigint;
  readonly endTimeUnixNano: bigint;
  readonly attributes: Readonly<Record<string, AttributeValueRead>>;
  readonly events: readonly {
    readonly name: string;
    readonly timeUnixNano: bigint;
    readonly attributes: Readonly<Record<string, AttributeValueRead>>;
  }[];
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  readonly status: { readonly code: number; readonly message?: string };
  readonly resource: Readonly<Record<string, AttributeValueRead>>;
  readonly scope: { readonly name: string; readonly version?: string };
  /** The resource's service.name. */
  readonly serviceName: string | undefined;
  /** 1-based line of the file it came from. */
  readonly line: number;
}

type J = Record<string, unknown>;

class Bad extends Error {}
const isObj = (v: unknown): v is J => typeof v === "object" && v !== null && !Array.isArray(v);
function obj(v: unknown, where: string): J {
  if (!isObj(v)) throw new Bad(`${where} is not an object`);
  return v;
}
function arr(v: unknown, where: string, optional = false): unknown[] {
  if (v === undefined && optional) return [];
  if (!Array.isArray(v)) throw new Bad(`${where} is not an array`);
  return v;
}
function str(v: unknown, where: string): string {
  if (typeof v !== "string") throw new Bad(`${where} is not a string`);
  return v;
}
function hex(v: unknown, len: number, where: string): string {
  const s = str(v, where);
  if (s.length !== len || !/^[0-9a-f]+$/.test(s))
    throw new Bad(`${where} is not ${len} lower-case hex digits: ${JSON.stringify(s)}`);
  if (/^0+$/.test(s)) throw new Bad(`${where} is all zeros`);
  return s;
}
function int(v: unknown, where: string): number {
  if (typeof v !== "number" || !Number.isInteger(v)) throw new Bad(`${where} is not an integer`);
  return v;
}
function nanosOf(v: unknown, where: string): bigint {
  // OTLP JSON: fixed64 as a decimal string.
  if (typeof v !== "string" || !/^\d{1,20}$/.test(v)) throw new Bad(`${where} is not a decimal string of nanoseconds`);
  return BigInt(v);
}

function value(v: unknown, where: string): AttributeValueRead {
  const o = obj(v, where);
  if ("stringValue" in o) return str(o.stringValue, `${where}.stringValue`);
  if ("boolValue" in o) {
    if (typeof o.boolValue !== "boolean") throw new Bad(`${where}.boolValue is not a boolean`);
    return o.boolValue;
  }
  if ("intValue" in o) {
    const s = o.intValue;
    if (typeof s !== "string" || !/^-?\d{1,19}$/.test(s)) throw new Bad(`${where}.intValue is not a decimal string`);
    return Number(s);
  }
  if ("doubleValue" in o) {
    const d = o.doubleValue;
    if (typeof d === "number") return d;
    if (d === "NaN") return Number.NaN;
    if (d === "Infinity") return Number.POSITIVE_INFINITY;
    if (d === "-Infinity") return Number.NEGATIVE_INFINITY;
    throw new Bad(`${where}.doubleValue is not a number`);
  }
  if ("bytesValue" in o) return new Uint8Array(Buffer.from(str(o.bytesValue, `${where}.bytesValue`), "base64"));
  if ("arrayValue" in o)
    return arr(obj(o.arrayValue, `${where}.arrayValue`).values, `${where}.arrayValue.values`, true).map((x, i) =>
      value(x, `${where}[${i}]`),
    );
  return undefined;
}

function attrs(v: unknown, where: string): Record<string, AttributeValueRead> {
  const out: Record<string, AttributeValueRead> = {};
  arr(v, where, true).forEach((kv, i) => {
    const o = obj(kv, `${where}[${i}]`);
    out[str(o.key, `${where}[${i}].key`)] = value(o.value, `${where}[${i}].value`);
  });
  return out;
}

/** Parses one line (one ExportTraceServiceRequest); `line` only labels the records and errors. */
export function parseTraceFileLine(text: string, file: string, line: number): TraceFileSpan[] {
  const out: TraceFileSpan[] = [];
  try {
    let req: unknown;
    try {
      req = JSON.parse(text);
    } catch (e) {
      throw new Bad(`not JSON: ${errorText(e)}`);
    }
    arr(obj(req, "request").resourceSpans, "resourceSpans").forEach((rsv, r) => {
      const rs = obj(rsv, `resourceSpans[${r}]`);
      const resource = attrs(
        obj(rs.resource ?? {}, `resourceSpans[${r}].resource`).attributes,
        `resourceSpans[${r}].resource.attributes`,
      );
      const serviceName = typeof resource["service.name"] === "string" ? resource["service.name"] : undefined;
      arr(rs.scopeSpans, `resourceSpans[${r}].scopeSpans`).forEach((ssv, s) => {
        const at = `resourceSpans[${r}].scopeSpans[${s}]`;
        const ss = obj(ssv, at);
        const sc = obj(ss.scope ?? {}, `${at}.scope`);
        const scope = {
          name: typeof sc.name === "string" ? sc.name : "",
          ...(typeof sc.version === "string" ? { version: sc.version } : {}),
        };
        arr(ss.spans, `${at}.spans`).forEach((spv, k) => {
          const w = `${at}.spans[${k}]`;
          const sp = obj(spv, w);
          const parent =
            sp.parentSpanId === undefined || sp.parentSpanId === ""
              ? undefined
              : hex(sp.parentSpanId, 16, `${w}.parentSpanId`);
          const status = obj(sp.status ?? {}, `${w}.status`);
          out.push({
            traceId: hex(sp.traceId, 32, `${w}.traceId`),
            spanId: hex(sp.spanId, 16, `${w}.spanId`),
            parentSpanId: parent,
            name: str(sp.name, `${w}.name`),
            kind: int(sp.kind ?? 0, `${w}.kind`),
            startTimeUnixNano: nanosOf(sp.startTimeUnixNano, `${w}.startTimeUnixNano`),
            endTimeUnixNano: nanosOf(sp.endTimeUnixNano, `${w}.endTimeUnixNano`),
            attributes: attrs(sp.attributes, `${w}.attributes`),
            events: arr(sp.events, `${w}.events`, true).map((ev, e) => {
              const eo = obj(ev, `${w}.events[${e}]`);
              return {
                name: str(eo.name, `${w}.events[${e}].name`),
                timeUnixNano: nanosOf(eo.timeUnixNano, `${w}.events[${e}].timeUnixNano`),
                attributes: attrs(eo.attributes, `${w}.events[${e}].attributes`),
              };
            }),
            status: {
              code: int(status.code ?? 0, `${w}.status.code`),
              ...(typeof status.message === "string" ? { message: status.message } : {}),
            },
            resource,
            scope,
            serviceName,
            line,
          });
        });
      });
    });
  } catch (e) {
    if (e instanceof Bad) throw new TraceFileInvalid({ file, line, message: `${file}:${line}: ${e.message}` });
    throw e;
  }
  return out;
}

/** All spans of a trace file, in file order. An empty file holds no spans. */
export function readTraceFile(path: string): TraceFileSpan[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new TraceFileInvalid({ file: path, line: 0, message: `cannot read trace file ${path}: ${errorText(e)}` });
  }
  const out: TraceFileSpan[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    for (const s of parseTraceFileLine(lines[i], path, i + 1)) out.push(s);
  }
  return out;
}

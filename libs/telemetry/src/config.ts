// Which exporters a process gets, from its options and the standard OTEL_* variables. Pure, so the
// precedence rules are testable without starting anything.
import { TelemetryConfigInvalid } from "./errors.ts";

export type Env = Readonly<Record<string, string | undefined>>;

export interface TelemetryOptions {
  /** The stage name (loader, calibrator, ...); the service name unless OTEL_SERVICE_NAME is set. */
  readonly serviceName: string;
  readonly runId: string;
  /** Version of the stage's code (service.version). */
  readonly stageVersion: string;
  /** `--trace-file <path>`: append spans as OTLP JSON lines (one ExportTraceServiceRequest per line). */
  readonly traceFile?: string;
  /** Where OTEL_* and TRACEPARENT are read from (default: process.env). */
  readonly env?: Env;
}

export interface ResolvedConfig {
  readonly serviceName: string;
  /** Full OTLP/HTTP traces URL, or undefined when no endpoint is configured. */
  readonly tracesUrl: string | undefined;
  readonly headers: Record<string, string>;
  readonly traceFile: string | undefined;
  /** True when neither exporter is configured: no provider, processor or exporter is created. */
  readonly off: boolean;
}

const nonEmpty = (v: string | undefined) => (v !== undefined && v.trim() !== "" ? v.trim() : undefined);

function httpUrl(setting: string, value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new TelemetryConfigInvalid({ setting, message: `${setting}=${value} is not a URL` });
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new TelemetryConfigInvalid({ setting, message: `${setting}=${value}: OTLP/HTTP needs an http or https URL` });
  return u.toString();
}

/** Per the OTLP exporter spec: the signal-specific variable is used as is, the base one gets `v1/traces` appended. */
export function resolveTracesUrl(env: Env): string | undefined {
  const specific = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  if (specific) return httpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", specific);
  const base = nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  if (base) {
    const b = httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT", base);
    return `${b.endsWith("/") ? b : `${b}/`}v1/traces`;
  }
  return undefined;
}

/** `k1=v1,k2=v2` with percent-encoded values (W3C baggage format, as the OTLP exporter spec says). */
export function parseOtlpHeaders(setting: string, value: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (value ?? "").split(",")) {
    if (part.trim() === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0)
      throw new TelemetryConfigInvalid({ setting, message: `${setting}: "${part.trim()}" is not key=value` });
    try {
      out[decodeURIComponent(part.slice(0, eq).trim())] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      throw new TelemetryConfigInvalid({
        setting,
        message: `${setting}: "${part.trim()}" has a broken percent-encoding`,
      });
    }
  }
  return out;
}

export function resolveConfig(o: TelemetryOptions, env: Env): ResolvedConfig {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(o.serviceName))
    throw new TelemetryConfigInvalid({
      setting: "serviceName",
      message: `service name "${o.serviceName}" must be 1-64 of [A-Za-z0-9_.-]`,
    });
  const serviceName = nonEmpty(env.OTEL_SERVICE_NAME) ?? o.serviceName;
  const traceFile = nonEmpty(o.traceFile);
  if (nonEmpty(env.OTEL_SDK_DISABLED)?.toLowerCase() === "true")
    return { serviceName, tracesUrl: undefined, headers: {}, traceFile: undefined, off: true };

  const exporter = nonEmpty(env.OTEL_TRACES_EXPORTER)?.toLowerCase() ?? "otlp";
  if (exporter !== "otlp" && exporter !== "none")
    throw new TelemetryConfigInvalid({
      setting: "OTEL_TRACES_EXPORTER",
      message: `OTEL_TRACES_EXPORTER=${exporter}: moeq supports otlp or none`,
    });
  for (const setting of ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] as const) {
    const p = nonEmpty(env[setting]);
    if (p !== undefined && p !== "http/protobuf")
      throw new TelemetryConfigInvalid({
        setting,
        message: `${setting}=${p}: moeq exports OTLP as http/protobuf only`,
      });
  }
  const tracesUrl = exporter === "none" ? undefined : resolveTracesUrl(env);
  const headers = {
    ...parseOtlpHeaders("OTEL_EXPORTER_OTLP_HEADERS", env.OTEL_EXPORTER_OTLP_HEADERS),
    ...parseOtlpHeaders("OTEL_EXPORTER_OTLP_TRACES_HEADERS", env.OTEL_EXPORTER_OTLP_TRACES_HEADERS),
  };
  return { serviceName, tracesUrl, headers, traceFile, off: tracesUrl === undefined && traceFile === undefined };
}

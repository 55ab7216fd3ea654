// One Telemetry per process. Off (no endpoint, no trace file): nothing is created or registered,
// the OTel API stays on its no-op tracer and the span helpers call straight through. On: a tracer
// provider with one batch processor per exporter (OTLP protobuf over HTTP, trace file), registered
// as the process's global provider with an AsyncLocalStorage context manager and the W3C propagator.
import { hostname } from "node:os";
import { type Context, context, propagation, ROOT_CONTEXT, type Tracer, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { loggingErrorHandler, setGlobalErrorHandler, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { Attr } from "./attributes.ts";
import { type Env, parseOtlpHeaders, resolveConfig, type TelemetryOptions } from "./config.ts";
import { TelemetryAlreadyActive, TelemetryConfigInvalid } from "./errors.ts";
import { envCarrier, extractTraceContext } from "./propagation.ts";
import { TraceFileExporter } from "./trace-file-exporter.ts";

export const INSTRUMENTATION_SCOPE = "moeq";

export interface InitTelemetryOptions extends TelemetryOptions {
  /** More exporters, each behind a SimpleSpanProcessor (tests: InMemorySpanExporter). Turns tracing on. */
  readonly exporters?: readonly SpanExporter[];
  /** Per-request timeout of the OTLP exporter (default 10 s). */
  readonly otlpTimeoutMs?: number;
}

export interface Telemetry {
  /** False when tracing is off: no provider, processor or exporter exists. */
  readonly enabled: boolean;
  readonly serviceName: string;
  readonly runId: string;
  /** The OTLP/HTTP traces URL spans go to, if any. */
  readonly tracesUrl: string | undefined;
  readonly traceFile: string | undefined;
  /** OTel API tracer (the no-op one when off). */
  readonly tracer: Tracer;
  /** The SDK provider when on (the Effect layer builds its tracer from it). */
  readonly provider: BasicTracerProvider | undefined;
  /**
   * The trace this process continues: `TRACEPARENT`/`TRACESTATE` from its environment, set by the
   * process that spawned it (see traceEnv). ROOT_CONTEXT when there is none.
   */
  readonly processParent: Context;
  /** Exports every ended span now. Never rejects (export failures are reported on stderr). */
  forceFlush(): Promise<void>;
  /**
   * Exports what is buffered, closes exporters and unregisters the globals. Idempotent; never
   * rejects: a collector that is down costs its spans, not the stage.
   */
  shutdown(): Promise<void>;
}

let active: Telemetry | undefined;

/** The running Telemetry of this process, if tracing is on. */
export const activeTelemetry = (): Telemetry | undefined => active;

// Batching defaults sized for per-projection spans (tens of thousands per run): the SDK's default
// queue of 2048 would drop spans between two exports.
const bspDefaults = {
  maxQueueSize: ["OTEL_BSP_MAX_QUEUE_SIZE", 65_536],
  maxExportBatchSize: ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1_024],
  scheduledDelayMillis: ["OTEL_BSP_SCHEDULE_DELAY", 2_000],
  exportTimeoutMillis: ["OTEL_BSP_EXPORT_TIMEOUT", 30_000],
} as const;

function batchConfig(env: Env) {
  const out: Record<string, number> = {};
  for (const [k, [name, dflt]] of Object.entries(bspDefaults)) {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === "") {
      out[k] = dflt;
      continue;
    }
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0)
      throw new TelemetryConfigInvalid({ setting: name, message: `${name}=${raw} is not a positive integer` });
    out[k] = n;
  }
  if (out.maxExportBatchSize > out.maxQueueSize) out.maxExportBatchSize = out.maxQueueSize;
  return out;
}

/** OTEL_RESOURCE_ATTRIBUTES (`k=v,...`, percent-encoded values) merged under moeq's own attributes. */
function resourceAttributes(o: TelemetryOptions, serviceName: string, env: Env) {
  return {
    ...parseOtlpHeaders("OTEL_RESOURCE_ATTRIBUTES", env.OTEL_RESOURCE_ATTRIBUTES),
    [ATTR_SERVICE_NAME]: serviceName,
    [ATTR_SERVICE_VERSION]: o.stageVersion,
    "host.name": hostname(),
    "process.pid": process.pid,
    [Attr.runId]: o.runId,
    [Attr.stage]: o.serviceName,
  };
}

/**
 * Sets up tracing for this process from its options and OTEL_* variables. Throws
 * TelemetryConfigInvalid (a bad variable or trace file path) or TelemetryAlreadyActive.
 */
export function initTelemetry(o: InitTelemetryOptions): Telemetry {
  const env = o.env ?? process.env;
  const cfg = resolveConfig(o, env);
  const processParent = extractTraceContext(envCarrier(env), ROOT_CONTEXT);
  const extra = o.exporters ?? [];
  if (cfg.off && extra.length === 0) {
    return {
      enabled: false,
      serviceName: cfg.serviceName,
      runId: o.runId,
      tracesUrl: undefined,
      traceFile: undefined,
      tracer: trace.getTracer(INSTRUMENTATION_SCOPE, o.stageVersion),
      provider: undefined,
      processParent,
      forceFlush: async () => {},
      shutdown: async () => {},
    };
  }
  if (active)
    throw new TelemetryAlreadyActive({
      message: `telemetry for ${active.serviceName} is still running in this process; shut it down first`,
    });

  const processors: SpanProcessor[] = [];
  const batch = batchConfig(env);
  if (cfg.tracesUrl !== undefined)
    processors.push(
      new BatchSpanProcessor(
        new OTLPTraceExporter({ url: cfg.tracesUrl, headers: cfg.headers, timeoutMillis: o.otlpTimeoutMs ?? 10_000 }),
        batch,
      ),
    );
  if (cfg.traceFile !== undefined) processors.push(new BatchSpanProcessor(new TraceFileExporter(cfg.traceFile), batch));
  for (const e of extra) processors.push(new SimpleSpanProcessor(e));

  // Export failures (collector down, bad endpoint) must never fail a stage: the SDK reports them to
  // its global error handler, which says each distinct problem once on stderr.
  const reported = new Set<string>();
  const report = (what: string, e: unknown) => {
    const text = `${what}: ${e instanceof Error ? e.message : String(e)}`;
    if (reported.has(text)) return;
    reported.add(text);
    process.stderr.write(`moeq telemetry (${cfg.serviceName}): ${text}\n`);
  };
  setGlobalErrorHandler((e) => report(`span export failed${cfg.tracesUrl ? ` (${cfg.tracesUrl})` : ""}`, e));

  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes(resourceAttributes(o, cfg.serviceName, env)),
    spanProcessors: processors,
  });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());

  let stopped: Promise<void> | undefined;
  const t: Telemetry = {
    enabled: true,
    serviceName: cfg.serviceName,
    runId: o.runId,
    tracesUrl: cfg.tracesUrl,
    traceFile: cfg.traceFile,
    tracer: provider.getTracer(INSTRUMENTATION_SCOPE, o.stageVersion),
    provider,
    processParent,
    forceFlush: () => provider.forceFlush().catch((e) => report("flushing spans failed", e)),
    shutdown: () => {
      stopped ??= (async () => {
        try {
          await provider.shutdown();
        } catch (e) {
          report("flushing spans at shutdown failed", e);
        } finally {
          if (active === t) active = undefined;
          setGlobalErrorHandler(loggingErrorHandler());
          trace.disable();
          propagation.disable();
          context.disable();
        }
      })();
      return stopped;
    },
  };
  active = t;
  return t;
}

// Effect side: a layer that runs initTelemetry for the layer's lifetime and installs an Effect
// tracer writing into the same OTel provider, so Effect.withSpan / Effect.fn spans and the plain
// span helpers share one trace tree. Off: Effect's span registration is disabled (TracerEnabled).
import * as OtelTracer from "@effect/opentelemetry/OtelTracer";
import { context, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { Context, Effect, Layer, References } from "effect";
import { Attr } from "./attributes.ts";
import { TelemetryAlreadyActive, TelemetryConfigInvalid } from "./errors.ts";
import { extractTraceContext, type TraceHeaderReader, type TraceHeaderWriter } from "./propagation.ts";
import { activeTelemetry, type InitTelemetryOptions, initTelemetry, type Telemetry } from "./telemetry.ts";

/** The process's Telemetry handle inside Effect programs. */
export class TelemetryService extends Context.Service<TelemetryService, Telemetry>()("@moeq/telemetry/Telemetry") {}

const acquire = (o: InitTelemetryOptions) =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      try {
        return Effect.succeed(initTelemetry(o));
      } catch (e) {
        if (e instanceof TelemetryConfigInvalid || e instanceof TelemetryAlreadyActive) return Effect.fail(e);
        return Effect.die(e);
      }
    }),
    (t) => Effect.promise(() => t.shutdown()),
  );

/**
 * Installs the Effect tracer for an already running Telemetry (from initTelemetry), without owning
 * its lifecycle: for plain-async stages that run Effect programs here and there.
 */
export const telemetryLayer = (t: Telemetry): Layer.Layer<TelemetryService> => {
  const service = Layer.succeed(TelemetryService, t);
  if (!t.enabled) return Layer.merge(service, Layer.succeed(References.TracerEnabled, false));
  const tracer = OtelTracer.layerWithoutOtelTracer.pipe(Layer.provide(Layer.succeed(OtelTracer.OtelTracer, t.tracer)));
  return Layer.merge(service, tracer);
};

/**
 * Tracing for an Effect program: runs initTelemetry for the layer's lifetime (flush and shutdown
 * when its scope closes), provides `TelemetryService`, and installs the OTel-backed Effect tracer
 * when on.
 */
export const TelemetryLive = (
  o: InitTelemetryOptions,
): Layer.Layer<TelemetryService, TelemetryConfigInvalid | TelemetryAlreadyActive> =>
  Layer.unwrap(Effect.map(acquire(o), telemetryLayer));

function externalParent(headers: TraceHeaderReader | undefined) {
  const sc = trace.getSpanContext(extractTraceContext(headers, ROOT_CONTEXT));
  if (sc === undefined) return undefined;
  return OtelTracer.makeExternalSpan({
    traceId: sc.traceId,
    spanId: sc.spanId,
    traceFlags: sc.traceFlags,
    ...(sc.traceState ? { traceState: sc.traceState } : {}),
  });
}

/** Makes the span in these message headers the parent of `self`'s spans; no-op without valid headers. */
export const withTraceHeaders =
  (headers: TraceHeaderReader | undefined) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
    const parent = externalParent(headers);
    return parent === undefined ? self : Effect.withParentSpan(self, parent);
  };

const HEX32 = /^(?!0+$)[0-9a-f]{32}$/;
const HEX16 = /^(?!0+$)[0-9a-f]{16}$/;

/** Writes the current Effect span's trace context into `headers` (nothing when tracing is off). */
export const injectTraceHeadersEffect = <H extends TraceHeaderWriter>(headers: H): Effect.Effect<H> =>
  Effect.map(Effect.option(Effect.currentSpan), (span) => {
    if (span._tag === "None" || activeTelemetry() === undefined) return headers;
    const { traceId, spanId, sampled } = span.value;
    if (!HEX32.test(traceId) || !HEX16.test(spanId)) return headers;
    headers.set("traceparent", `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`);
    const active = trace.getSpanContext(context.active());
    if (active?.spanId === spanId && active.traceState) headers.set("tracestate", active.traceState.serialize());
    return headers;
  });

/**
 * Wraps `self` in the stage's span (named after the service), child of the run span this process
 * was spawned under (TRACEPARENT in its env).
 */
export const withStageSpan = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | TelemetryService> =>
  Effect.flatMap(Effect.service(TelemetryService), (t) => {
    const spanned = Effect.withSpan(self, t.serviceName, {
      attributes: { [Attr.runId]: t.runId, [Attr.stage]: t.serviceName },
    });
    const sc = trace.getSpanContext(t.processParent);
    if (sc === undefined) return spanned;
    return Effect.withParentSpan(
      spanned,
      OtelTracer.makeExternalSpan({ traceId: sc.traceId, spanId: sc.spanId, traceFlags: sc.traceFlags }),
    );
  });

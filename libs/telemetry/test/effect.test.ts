import { join } from "node:path";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { Effect, Exit, Layer, References } from "effect";
import { describe, expect, it } from "vitest";
import {
  Attr,
  activeTelemetry,
  injectTraceHeaders,
  injectTraceHeadersEffect,
  projectionSpan,
  readTraceFile,
  TelemetryConfigInvalid,
  TelemetryLive,
  TelemetryService,
  telemetryLayer,
  withSpan,
  withStageSpan,
  withTraceHeaders,
} from "../src/index.ts";
import { tempDir } from "./helpers.ts";

const REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_SPAN = "00f067aa0ba902b7";

describe("TelemetryLive (Effect)", () => {
  it("exports Effect.withSpan / Effect.fn spans and nests plain helpers and Effect spans in one tree", async () => {
    using tmp = tempDir("effect");
    const file = join(tmp.dir, "t.jsonl");
    const quantizeExpert = Effect.fn("quantize-expert")(function* (expert: number) {
      yield* Effect.annotateCurrentSpan(Attr.expert, expert);
      // Plain code called from an Effect span continues it.
      yield* Effect.promise(() => projectionSpan("quantize", { layer: 0, expert, proj: "gate_proj" }, async () => {}));
    });
    const program = Effect.gen(function* () {
      yield* quantizeExpert(3);
      // An Effect span inside a plain span continues the plain one.
      const t = yield* TelemetryService;
      yield* Effect.promise(() =>
        withSpan("plain-outer", undefined, () =>
          Effect.runPromise(Effect.void.pipe(Effect.withSpan("effect-inner"), Effect.provide(telemetryLayer(t)))),
        ),
      );
    }).pipe(withStageSpan);
    await Effect.runPromise(
      program.pipe(
        Effect.provide(
          TelemetryLive({ serviceName: "quantizer", runId: "r-eff", stageVersion: "1", traceFile: file, env: {} }),
        ),
      ),
    );
    expect(activeTelemetry()).toBeUndefined(); // the layer's scope closed: shut down

    const spans = readTraceFile(file);
    const one = (n: string) => {
      const hits = spans.filter((s) => s.name === n);
      expect(hits, n).toHaveLength(1);
      return hits[0];
    };
    const stage = one("quantizer");
    expect(stage.attributes).toMatchObject({ [Attr.runId]: "r-eff", [Attr.stage]: "quantizer" });
    expect(stage.parentSpanId).toBeUndefined();
    expect(stage.status.code).toBe(1); // Effect marks successful spans OK
    expect(one("quantize-expert").parentSpanId).toBe(stage.spanId);
    expect(one("quantize-expert").attributes[Attr.expert]).toBe(3);
    expect(one("quantize").parentSpanId).toBe(one("quantize-expert").spanId);
    expect(one("plain-outer").parentSpanId).toBe(stage.spanId);
    expect(one("effect-inner").parentSpanId).toBe(one("plain-outer").spanId);
    expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
  });

  it("continues a trace from message headers and writes the current span into outgoing headers", async () => {
    using tmp = tempDir("effect-headers");
    const file = join(tmp.dir, "t.jsonl");
    const incoming = natsHeaders();
    incoming.set("traceparent", `00-${REMOTE_TRACE}-${REMOTE_SPAN}-01`);
    let outgoing = "";
    let plainOutgoing: string | undefined;
    const consume = Effect.gen(function* () {
      const h = yield* injectTraceHeadersEffect(natsHeaders());
      outgoing = h.get("traceparent");
      plainOutgoing = yield* Effect.sync(() => injectTraceHeaders(new Map<string, string>()).get("traceparent"));
    }).pipe(Effect.withSpan("consume"), withTraceHeaders(incoming));
    await Effect.runPromise(
      consume.pipe(
        Effect.provide(
          TelemetryLive({ serviceName: "packer", runId: "r", stageVersion: "1", traceFile: file, env: {} }),
        ),
      ),
    );
    const [span] = readTraceFile(file);
    expect(span.name).toBe("consume");
    expect(span.traceId).toBe(REMOTE_TRACE);
    expect(span.parentSpanId).toBe(REMOTE_SPAN);
    expect(outgoing).toBe(`00-${REMOTE_TRACE}-${span.spanId}-01`);
    expect(plainOutgoing).toBe(outgoing);
  });

  it("parents the stage span on TRACEPARENT from the environment (the spawning supervisor's run span)", async () => {
    using tmp = tempDir("effect-env");
    const file = join(tmp.dir, "t.jsonl");
    await Effect.runPromise(
      Effect.void.pipe(
        withStageSpan,
        Effect.provide(
          TelemetryLive({
            serviceName: "loader",
            runId: "r",
            stageVersion: "1",
            traceFile: file,
            env: { TRACEPARENT: `00-${REMOTE_TRACE}-${REMOTE_SPAN}-01` },
          }),
        ),
      ),
    );
    const [span] = readTraceFile(file);
    expect(span).toMatchObject({ name: "loader", traceId: REMOTE_TRACE, parentSpanId: REMOTE_SPAN });
  });

  it("off: provides a disabled Telemetry, turns Effect span registration off, writes and sends nothing", async () => {
    const probe = Effect.gen(function* () {
      const t = yield* TelemetryService;
      const enabled = yield* References.TracerEnabled;
      const h = yield* injectTraceHeadersEffect(new Map<string, string>()).pipe(Effect.withSpan("x"));
      return { enabled: t.enabled, tracerEnabled: enabled, headers: [...h.keys()], active: activeTelemetry() };
    });
    const r = await Effect.runPromise(
      probe.pipe(
        withStageSpan,
        Effect.provide(TelemetryLive({ serviceName: "loader", runId: "r", stageVersion: "1", env: {} })),
      ),
    );
    expect(r).toEqual({ enabled: false, tracerEnabled: false, headers: [], active: undefined });
  });

  it("fails the layer with TelemetryConfigInvalid on a bad setting", async () => {
    const exit = await Effect.runPromiseExit(
      Layer.build(
        TelemetryLive({
          serviceName: "loader",
          runId: "r",
          stageVersion: "1",
          env: { OTEL_EXPORTER_OTLP_ENDPOINT: "nope" },
        }),
      ).pipe(Effect.scoped),
    );
    expect(Exit.isFailure(exit)).toBe(true);
    if (Exit.isFailure(exit)) {
      const err = exit.cause.reasons.find((r) => r._tag === "Fail");
      expect(err && "error" in err ? err.error : undefined).toBeInstanceOf(TelemetryConfigInvalid);
    }
  });
});

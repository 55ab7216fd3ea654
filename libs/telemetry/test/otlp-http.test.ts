import { hostname } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  Attr,
  expertSpan,
  initTelemetry,
  projectionSpan,
  readTraceFile,
  runSpan,
  setWork,
  stageSpan,
} from "../src/index.ts";
import { type DecodedSpan, decodeOtlpSpans, exportTraceServiceRequestType, otlpListener, tempDir } from "./helpers.ts";

const hex = (b64: string | undefined) => (b64 ? Buffer.from(b64, "base64").toString("hex") : undefined);

describe("OTLP protobuf over HTTP", () => {
  it("posts the run's spans to <endpoint>/v1/traces, decodable with the official OTLP definitions", async () => {
    const rx = await otlpListener();
    try {
      const t = initTelemetry({
        serviceName: "quantizer",
        runId: "run-otlp",
        stageVersion: "2.0.0",
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=s3cret%20key" },
      });
      expect(t.tracesUrl).toBe(`${rx.url}/v1/traces`);
      await runSpan("run-otlp", () =>
        stageSpan(() =>
          expertSpan(4, 9, async () => {
            for (const proj of ["gate_proj", "down_proj"])
              await projectionSpan(
                "quantize",
                { layer: 4, expert: 9, proj, algorithm: "rtn", tokensRouted: 33, weightMass: 7.25, queueWaitMs: 1.5 },
                async (s) => {
                  setWork(s, { loss: 0.03125, bytes: 1 << 20 });
                },
              );
          }),
        ),
      );
      await t.shutdown();

      expect(rx.received.length).toBeGreaterThanOrEqual(1);
      const spans: DecodedSpan[] = [];
      for (const r of rx.received) {
        expect(r.method).toBe("POST");
        expect(r.path).toBe("/v1/traces");
        expect(r.headers["content-type"]).toBe("application/x-protobuf");
        expect(r.headers["x-api-key"]).toBe("s3cret key");
        spans.push(...decodeOtlpSpans(r.body));
      }
      expect(spans.map((s) => s.name).sort()).toEqual(["expert", "quantize", "quantize", "quantizer", "run"]);
      expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
      expect(spans.every((s) => /^[0-9a-f]{32}$/.test(s.traceId!) && /^[0-9a-f]{16}$/.test(s.spanId!))).toBe(true);
      const one = (name: string) => spans.find((s) => s.name === name)!;
      expect(one("run").parentSpanId).toBeUndefined();
      expect(one("quantizer").parentSpanId).toBe(one("run").spanId);
      expect(one("expert").parentSpanId).toBe(one("quantizer").spanId);
      expect(one("expert").attributes).toEqual({ [Attr.layer]: "4", [Attr.expert]: "9" });
      for (const q of spans.filter((s) => s.name === "quantize")) {
        expect(q.parentSpanId).toBe(one("expert").spanId);
        expect(q.kind).toBe(1);
        // int64 attributes decode as Long → String; doubles as numbers.
        expect(q.attributes).toMatchObject({
          [Attr.layer]: "4",
          [Attr.expert]: "9",
          [Attr.algorithm]: "rtn",
          [Attr.tokensRouted]: "33",
          [Attr.weightMass]: 7.25,
          [Attr.queueWaitMs]: 1.5,
          [Attr.loss]: 0.03125,
          [Attr.bytes]: String(1 << 20),
        });
        expect(["gate_proj", "down_proj"]).toContain(q.attributes[Attr.proj]);
        expect(typeof q.attributes[Attr.computeMs]).toBe("number");
        expect(BigInt(q.endTimeUnixNano) >= BigInt(q.startTimeUnixNano)).toBe(true);
        // Nanoseconds since the epoch: within a minute of now.
        expect(Number(BigInt(q.startTimeUnixNano) / 1_000_000n)).toBeGreaterThan(Date.now() - 60_000);
      }
      for (const s of spans) {
        expect(s.scope).toBe("moeq");
        expect(s.resource).toMatchObject({
          "service.name": "quantizer",
          "service.version": "2.0.0",
          "host.name": hostname(),
          "moeq.run_id": "run-otlp",
        });
      }
    } finally {
      await rx.close();
    }
  });

  it("exports the same spans to the endpoint and the trace file when both are set", async () => {
    const rx = await otlpListener();
    using tmp = tempDir("both");
    const file = join(tmp.dir, "t.jsonl");
    try {
      const t = initTelemetry({
        serviceName: "evaluator",
        runId: "r",
        stageVersion: "0",
        traceFile: file,
        env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${rx.url}/custom` },
      });
      await stageSpan(() => projectionSpan("evaluate", { layer: 1, expert: 2, proj: "up_proj" }, async () => {}));
      await t.shutdown();
      const Req = exportTraceServiceRequestType();
      expect(rx.received.map((r) => r.path)).toEqual(["/custom"]);
      const got = Req.toObject(Req.decode(rx.received[0].body), { bytes: String }) as {
        resourceSpans: { scopeSpans: { spans: { spanId: string }[] }[] }[];
      };
      const httpIds = got.resourceSpans
        .flatMap((r) => r.scopeSpans.flatMap((s) => s.spans.map((x) => hex(x.spanId))))
        .sort();
      const fileIds = readTraceFile(file)
        .map((s) => s.spanId)
        .sort();
      expect(httpIds).toHaveLength(2);
      expect(httpIds).toEqual(fileIds);
    } finally {
      await rx.close();
    }
  });

  it("survives an endpoint that refuses: spans are dropped, the stage does not fail, shutdown returns", async () => {
    const rx = await otlpListener();
    await rx.close(); // the port is now closed: connection refused
    using tmp = tempDir("refused");
    const file = join(tmp.dir, "t.jsonl");
    const t = initTelemetry({
      serviceName: "loader",
      runId: "r",
      stageVersion: "0",
      traceFile: file,
      otlpTimeoutMs: 2000,
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url },
    });
    const value = await stageSpan(async () => 42);
    expect(value).toBe(42);
    const t0 = Date.now();
    await t.shutdown();
    expect(Date.now() - t0).toBeLessThan(15_000);
    // The file exporter is independent of the failing one.
    expect(readTraceFile(file).map((s) => s.name)).toEqual(["loader"]);
  });
});

import { readdirSync } from "node:fs";
import { context, type ProxyTracerProvider, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import {
  activeTelemetry,
  initTelemetry,
  injectTraceHeaders,
  NOOP_SPAN,
  projectionSpan,
  runSpan,
  withSpan,
  withSpanSync,
} from "../src/index.ts";
import { cleanEnv, runChild, tempDir } from "./helpers.ts";

describe("tracing off (no endpoint, no trace file)", () => {
  it("creates no provider, registers nothing, and the helpers call straight through with a no-op span", async () => {
    const t = initTelemetry({ serviceName: "loader", runId: "r", stageVersion: "0", env: {} });
    expect(t).toMatchObject({ enabled: false, provider: undefined, tracesUrl: undefined, traceFile: undefined });
    expect(activeTelemetry()).toBeUndefined();
    expect((trace.getTracerProvider() as ProxyTracerProvider).getDelegate().constructor.name).toBe(
      "NoopTracerProvider",
    );
    expect(t.tracer.startSpan("probe").isRecording()).toBe(false);

    // `fn` runs synchronously in the caller's tick, with the shared no-op span and no context switch.
    let ranSync = false;
    const p = withSpan("x", { a: 1 }, (span) => {
      ranSync = true;
      expect(span).toBe(NOOP_SPAN);
      expect(context.active()).toBe(ROOT_CONTEXT);
      return 7;
    });
    expect(ranSync).toBe(true);
    expect(await p).toBe(7);
    expect(withSpanSync("y", undefined, () => "v")).toBe("v");
    await expect(withSpan("z", undefined, async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    const headers = await runSpan("r", () =>
      projectionSpan("quantize", { layer: 1 }, () => injectTraceHeaders(new Map<string, string>())),
    );
    expect(headers.size).toBe(0);
    await t.shutdown();
  });

  it("a stage process without OTEL_* variables or --trace-file exports nothing and writes no file", async () => {
    using tmp = tempDir("off-proc");
    const child = runChild("off-stage.ts", [], cleanEnv({ TMPDIR: tmp.dir, HOME: tmp.dir }));
    const r = await child.done;
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    expect(out).toEqual({
      enabled: false,
      active: false,
      provider: false,
      globalDelegate: "NoopTracerProvider",
      recording: false,
      seen: [true, true, 0],
    });
    expect(readdirSync(tmp.dir)).toEqual([]);
  });

  it("OTEL_SDK_DISABLED=true wins over an endpoint in the environment", async () => {
    const r = await runChild(
      "off-stage.ts",
      [],
      cleanEnv({ OTEL_SDK_DISABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" }),
    ).done;
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split("\n").at(-1)!)).toMatchObject({
      enabled: false,
      provider: false,
      recording: false,
    });
  });
});

import { describe, expect, it } from "vitest";
import { parseOtlpHeaders, resolveConfig, resolveTracesUrl, TelemetryConfigInvalid } from "../src/index.ts";

const base = { serviceName: "quantizer", runId: "run-1", stageVersion: "0.1.0" };

function thrown(f: () => unknown): TelemetryConfigInvalid {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(TelemetryConfigInvalid);
    return e as TelemetryConfigInvalid;
  }
  throw new Error("expected TelemetryConfigInvalid");
}

describe("endpoint resolution (OTLP exporter spec)", () => {
  it("appends v1/traces to the base endpoint, with or without a trailing slash or a path", () => {
    expect(resolveTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4318" })).toBe(
      "http://localhost:4318/v1/traces",
    );
    expect(resolveTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4318/" })).toBe(
      "http://localhost:4318/v1/traces",
    );
    expect(resolveTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: "https://collector.example:443/otlp" })).toBe(
      "https://collector.example/otlp/v1/traces",
    );
  });

  it("uses the traces-specific endpoint as is, and it wins over the base one", () => {
    expect(
      resolveTracesUrl({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://a:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://b:9999/custom/path",
      }),
    ).toBe("http://b:9999/custom/path");
  });

  it("is off with no endpoint, empty endpoints, or OTEL_TRACES_EXPORTER=none", () => {
    expect(resolveConfig(base, {}).off).toBe(true);
    expect(resolveConfig(base, { OTEL_EXPORTER_OTLP_ENDPOINT: "  " }).off).toBe(true);
    const none = resolveConfig(base, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318", OTEL_TRACES_EXPORTER: "none" });
    expect(none.off).toBe(true);
    expect(none.tracesUrl).toBeUndefined();
  });

  it("is on with a trace file alone; OTEL_SDK_DISABLED=true turns everything off", () => {
    const f = resolveConfig({ ...base, traceFile: "/tmp/t.jsonl" }, {});
    expect(f).toMatchObject({ off: false, traceFile: "/tmp/t.jsonl", tracesUrl: undefined });
    const d = resolveConfig(
      { ...base, traceFile: "/tmp/t.jsonl" },
      { OTEL_SDK_DISABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318" },
    );
    expect(d).toMatchObject({ off: true, traceFile: undefined, tracesUrl: undefined });
  });

  it("takes the service name from OTEL_SERVICE_NAME when set, else the stage name", () => {
    expect(resolveConfig(base, {}).serviceName).toBe("quantizer");
    expect(resolveConfig(base, { OTEL_SERVICE_NAME: "quantizer-gpu3" }).serviceName).toBe("quantizer-gpu3");
  });
});

describe("bad settings are typed errors naming the setting", () => {
  it("rejects a non-URL or non-http endpoint", () => {
    const e1 = thrown(() => resolveConfig(base, { OTEL_EXPORTER_OTLP_ENDPOINT: "localhost:4318" }));
    expect(e1.setting).toBe("OTEL_EXPORTER_OTLP_ENDPOINT");
    expect(e1.message).toContain("localhost:4318");
    const e2 = thrown(() => resolveConfig(base, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "grpc://x:4317" }));
    expect(e2.setting).toBe("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    expect(thrown(() => resolveConfig(base, { OTEL_EXPORTER_OTLP_ENDPOINT: "not a url" })).setting).toBe(
      "OTEL_EXPORTER_OTLP_ENDPOINT",
    );
  });

  it("rejects protocols other than http/protobuf and exporters other than otlp/none", () => {
    const p = thrown(() =>
      resolveConfig(base, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }),
    );
    expect(p.setting).toBe("OTEL_EXPORTER_OTLP_PROTOCOL");
    const t = thrown(() => resolveConfig(base, { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json" }));
    expect(t.setting).toBe("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
    expect(resolveConfig(base, { OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" }).off).toBe(true);
    expect(thrown(() => resolveConfig(base, { OTEL_TRACES_EXPORTER: "zipkin" })).setting).toBe("OTEL_TRACES_EXPORTER");
  });

  it("rejects a service name that is not a plain identifier", () => {
    expect(thrown(() => resolveConfig({ ...base, serviceName: "" }, {})).setting).toBe("serviceName");
    expect(thrown(() => resolveConfig({ ...base, serviceName: "a b" }, {})).setting).toBe("serviceName");
  });

  it("parses OTLP headers (percent-encoded values) and rejects malformed pairs", () => {
    expect(parseOtlpHeaders("H", "api-key=a%20b,x=1")).toEqual({ "api-key": "a b", x: "1" });
    expect(parseOtlpHeaders("H", undefined)).toEqual({});
    expect(thrown(() => parseOtlpHeaders("OTEL_EXPORTER_OTLP_HEADERS", "novalue")).setting).toBe(
      "OTEL_EXPORTER_OTLP_HEADERS",
    );
    expect(thrown(() => parseOtlpHeaders("OTEL_EXPORTER_OTLP_HEADERS", "k=%zz")).message).toContain("percent");
  });
});

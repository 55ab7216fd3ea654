import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  Attr,
  expertSpan,
  initTelemetry,
  layerSpan,
  projectionSpan,
  readTraceFile,
  runSpan,
  setWork,
  stageSpan,
  TelemetryAlreadyActive,
  TelemetryConfigInvalid,
  TraceFileInvalid,
  type TraceFileSpan,
  withSpan,
  withSpanSync,
} from "../src/index.ts";
import { exportTraceServiceRequestType, otlpJsonToProtoObject, tempDir } from "./helpers.ts";

const PROJS = ["gate_proj", "up_proj", "down_proj"];

/** One stage's span tree for 2 layers × 2 experts × 3 projections, with known attributes. */
async function tinyRun(runId: string) {
  await runSpan(runId, () =>
    stageSpan(async () => {
      for (const layer of [0, 1])
        await layerSpan(layer, async () => {
          for (const expert of [0, 1])
            await expertSpan(layer, expert, async () => {
              for (const [p, proj] of PROJS.entries())
                await projectionSpan(
                  "quantize",
                  { layer, expert, proj, algorithm: "gptq", tokensRouted: 10 * layer + expert, weightMass: 0.5 + p },
                  async (span) => {
                    setWork(span, { loss: (layer + 1) * 0.125 + expert + p / 4, bytes: 4096 * (p + 1) });
                  },
                );
            });
        });
    }),
  );
}

const byId = (spans: TraceFileSpan[]) => new Map(spans.map((s) => [s.spanId, s]));

describe("--trace-file: OTLP JSON lines", () => {
  it("holds the run → stage → layer → expert → projection tree with one span per (layer, expert, projection)", async () => {
    using tmp = tempDir("tree");
    const file = join(tmp.dir, "trace.jsonl");
    const t = initTelemetry({
      serviceName: "quantizer",
      runId: "run-7",
      stageVersion: "1.2.3",
      traceFile: file,
      env: {},
    });
    expect(t.enabled).toBe(true);
    await tinyRun("run-7");
    await t.shutdown();

    const spans = readTraceFile(file);
    expect(spans).toHaveLength(1 + 1 + 2 + 4 + 12);
    expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
    const ids = byId(spans);
    const parentOf = (s: TraceFileSpan) => (s.parentSpanId ? ids.get(s.parentSpanId) : undefined);

    const [run] = spans.filter((s) => s.name === "run");
    expect(run.parentSpanId).toBeUndefined();
    expect(run.attributes[Attr.runId]).toBe("run-7");
    const [stage] = spans.filter((s) => s.name === "quantizer");
    expect(parentOf(stage)).toBe(run);
    const layers = spans.filter((s) => s.name === "layer");
    expect(layers.map((s) => s.attributes[Attr.layer]).sort()).toEqual([0, 1]);
    for (const l of layers) expect(parentOf(l)).toBe(stage);
    const experts = spans.filter((s) => s.name === "expert");
    for (const e of experts) {
      expect(parentOf(e)?.name).toBe("layer");
      expect(parentOf(e)?.attributes[Attr.layer]).toBe(e.attributes[Attr.layer]);
    }

    const quantize = spans.filter((s) => s.name === "quantize");
    const keys = quantize.map(
      (s) => `${s.attributes[Attr.layer]}/${s.attributes[Attr.expert]}/${s.attributes[Attr.proj]}`,
    );
    expect(new Set(keys).size).toBe(12);
    for (const s of quantize) {
      const layer = s.attributes[Attr.layer] as number;
      const expert = s.attributes[Attr.expert] as number;
      const p = PROJS.indexOf(s.attributes[Attr.proj] as string);
      expect(parentOf(s)?.name).toBe("expert");
      expect(parentOf(s)?.attributes[Attr.expert]).toBe(expert);
      expect(s.attributes[Attr.algorithm]).toBe("gptq");
      expect(s.attributes[Attr.tokensRouted]).toBe(10 * layer + expert);
      expect(s.attributes[Attr.weightMass]).toBe(0.5 + p);
      expect(s.attributes[Attr.loss]).toBe((layer + 1) * 0.125 + expert + p / 4);
      expect(s.attributes[Attr.bytes]).toBe(4096 * (p + 1));
      expect(typeof s.attributes[Attr.computeMs]).toBe("number");
      expect(s.attributes[Attr.computeMs] as number).toBeGreaterThanOrEqual(0);
      expect(s.endTimeUnixNano >= s.startTimeUnixNano).toBe(true);
      expect(s.kind).toBe(1); // INTERNAL: no message headers were given
    }
    for (const s of spans) {
      expect(s.serviceName).toBe("quantizer");
      expect(s.resource).toMatchObject({
        "service.version": "1.2.3",
        "host.name": hostname(),
        "moeq.run_id": "run-7",
        "moeq.stage": "quantizer",
        "process.pid": process.pid,
      });
      expect(s.scope).toEqual({ name: "moeq", version: "1.2.3" });
      expect(s.status.code).toBe(0);
    }
    // Children end before their parents.
    for (const s of spans) {
      const p = parentOf(s);
      if (p)
        expect(
          p.endTimeUnixNano >= s.endTimeUnixNano,
          `${p.name} ${p.startTimeUnixNano}-${p.endTimeUnixNano} ⊇ ${s.name} ${s.startTimeUnixNano}-${s.endTimeUnixNano}`,
        ).toBe(true);
    }
  });

  it("writes every line as an ExportTraceServiceRequest in the OTLP JSON encoding, checked against the official .proto", async () => {
    using tmp = tempDir("format");
    const file = join(tmp.dir, "trace.jsonl");
    const t = initTelemetry({ serviceName: "calibrator", runId: "r", stageVersion: "0.0.1", traceFile: file, env: {} });
    await withSpan(
      "attrs",
      {
        s: "x",
        i: 42,
        big: 2 ** 40,
        neg: -3,
        d: 0.5,
        nan: Number.NaN,
        inf: Number.POSITIVE_INFINITY,
        b: false,
        arr: [1, 2],
        sarr: ["a", "b"],
      },
      async (span) => {
        span.addEvent("checkpoint", { "moeq.bytes": 7, note: 'quote " and \\ backslash' });
      },
    );
    await withSpan("fails", undefined, () => Promise.reject(new Error('bad "input"'))).catch(() => {});
    await t.shutdown();
    const Req = exportTraceServiceRequestType();
    const lines = readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l !== "");
    expect(lines.length).toBeGreaterThanOrEqual(1);
    for (const line of lines) {
      const json = JSON.parse(line);
      const spans = json.resourceSpans[0].scopeSpans[0].spans;
      const span = spans.find((x: { name: string }) => x.name === "attrs");
      const failed = spans.find((x: { name: string }) => x.name === "fails");
      expect(failed.status).toEqual({ code: 2, message: 'bad "input"' });
      expect(failed.parentSpanId).toBeUndefined();
      expect(span.events).toEqual([
        {
          timeUnixNano: expect.stringMatching(/^\d{19}$/),
          name: "checkpoint",
          attributes: [
            { key: "moeq.bytes", value: { intValue: "7" } },
            { key: "note", value: { stringValue: 'quote " and \\ backslash' } },
          ],
          droppedAttributesCount: 0,
        },
      ]);
      // OTLP JSON: hex ids, 64-bit integers as strings, enums as integers.
      expect(span.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(span.spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(span.startTimeUnixNano).toMatch(/^\d{19}$/);
      expect(span.kind).toBe(1);
      expect(span.status).toEqual({ code: 0 });
      const a = Object.fromEntries(span.attributes.map((kv: { key: string; value: unknown }) => [kv.key, kv.value]));
      expect(a).toEqual({
        s: { stringValue: "x" },
        i: { intValue: "42" },
        big: { intValue: "1099511627776" },
        neg: { intValue: "-3" },
        d: { doubleValue: 0.5 },
        nan: { doubleValue: "NaN" },
        inf: { doubleValue: "Infinity" },
        b: { boolValue: false },
        arr: { arrayValue: { values: [{ intValue: "1" }, { intValue: "2" }] } },
        sarr: { arrayValue: { values: [{ stringValue: "a" }, { stringValue: "b" }] } },
      });
      // Every field name and type must be the official schema's: protobufjs drops unknown fields,
      // so a round trip through the message type must give the same object back.
      const asProto = otlpJsonToProtoObject(json);
      const msg = Req.fromObject(asProto);
      expect(Req.verify(msg)).toBeNull();
      const decoded = Req.decode(Req.encode(msg).finish());
      const back = Req.toObject(decoded, { longs: String, enums: Number, bytes: String, defaults: false, json: true });
      expect(normalize(back)).toEqual(normalize(asProto));
      expect(Buffer.from(back.resourceSpans[0].scopeSpans[0].spans[0].traceId, "base64").toString("hex")).toBe(
        span.traceId,
      );
    }
  });

  it("continues a traceparent string (a work-queue delivery) as a CONSUMER child of the remote span", async () => {
    using tmp = tempDir("traceparent");
    const file = join(tmp.dir, "trace.jsonl");
    const t = initTelemetry({ serviceName: "quantizer", runId: "r", stageVersion: "0", traceFile: file, env: {} });
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    await stageSpan(() =>
      projectionSpan("quantize", { layer: 2, expert: 5, proj: "down_proj", queueWaitMs: 12.5 }, () => {}, {
        traceparent,
      }),
    );
    await t.shutdown();
    const q = readTraceFile(file).find((s) => s.name === "quantize")!;
    expect(q).toMatchObject({ traceId: "0af7651916cd43dd8448eb211c80319c", parentSpanId: "b7ad6b7169203331", kind: 5 });
    expect(q.attributes).toMatchObject({
      [Attr.layer]: 2,
      [Attr.expert]: 5,
      [Attr.proj]: "down_proj",
      [Attr.queueWaitMs]: 12.5,
    });
  });

  it("records a failing span with status ERROR and an exception event, and rethrows", async () => {
    using tmp = tempDir("error");
    const file = join(tmp.dir, "trace.jsonl");
    const t = initTelemetry({ serviceName: "packer", runId: "r", stageVersion: "0", traceFile: file, env: {} });
    await expect(withSpan("pack", {}, async () => Promise.reject(new Error("disk full")))).rejects.toThrow("disk full");
    expect(() =>
      withSpanSync("sync", {}, () => {
        throw new Error("bad shape");
      }),
    ).toThrow("bad shape");
    await t.shutdown();
    const spans = readTraceFile(file);
    for (const [name, msg] of [
      ["pack", "disk full"],
      ["sync", "bad shape"],
    ]) {
      const s = spans.find((x) => x.name === name)!;
      expect(s.status).toEqual({ code: 2, message: msg });
      expect(s.events.map((e) => e.name)).toEqual(["exception"]);
      expect(s.events[0].attributes["exception.message"]).toBe(msg);
    }
  });

  it("appends: two processes' (or two sessions') spans in one file stay separate lines", async () => {
    using tmp = tempDir("append");
    const file = join(tmp.dir, "trace.jsonl");
    for (const stage of ["loader", "evaluator"]) {
      const t = initTelemetry({ serviceName: stage, runId: "r", stageVersion: "0", traceFile: file, env: {} });
      await withSpan(`${stage}-work`, undefined, async () => {});
      await t.shutdown();
    }
    const spans = readTraceFile(file);
    expect(spans.map((s) => [s.serviceName, s.name])).toEqual([
      ["loader", "loader-work"],
      ["evaluator", "evaluator-work"],
    ]);
    expect(spans[0].line).toBe(1);
    expect(spans[1].line).toBe(2);
  });

  it("refuses a second Telemetry while one runs, and a trace file it cannot create", async () => {
    using tmp = tempDir("refuse");
    const t = initTelemetry({
      serviceName: "loader",
      runId: "r",
      stageVersion: "0",
      traceFile: join(tmp.dir, "a.jsonl"),
      env: {},
    });
    expect(() =>
      initTelemetry({
        serviceName: "loader",
        runId: "r",
        stageVersion: "0",
        traceFile: join(tmp.dir, "b.jsonl"),
        env: {},
      }),
    ).toThrow(TelemetryAlreadyActive);
    await t.shutdown();
    await t.shutdown(); // idempotent
    const missing = join(tmp.dir, "no-such-dir", "t.jsonl");
    try {
      initTelemetry({ serviceName: "loader", runId: "r", stageVersion: "0", traceFile: missing, env: {} });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(TelemetryConfigInvalid);
      expect((e as TelemetryConfigInvalid).message).toContain(missing);
    }
    expect(existsSync(missing)).toBe(false);
  });
});

describe("trace file reader", () => {
  it("names the file, line and field of a broken line", () => {
    using tmp = tempDir("reader");
    const good = JSON.stringify({
      resourceSpans: [
        {
          resource: { attributes: [] },
          scopeSpans: [
            {
              scope: { name: "m" },
              spans: [
                {
                  traceId: "0af7651916cd43dd8448eb211c80319c",
                  spanId: "b7ad6b7169203331",
                  name: "n",
                  kind: 1,
                  startTimeUnixNano: "1",
                  endTimeUnixNano: "2",
                  attributes: [],
                  status: {},
                },
              ],
            },
          ],
        },
      ],
    });
    const cases: [string, RegExp][] = [
      ["{not json", /:2: not JSON/],
      [good.replace('"b7ad6b7169203331"', '"B7AD6B7169203331"'), /:2: .*spanId is not 16 lower-case hex/],
      [
        good.replace('"startTimeUnixNano":"1"', '"startTimeUnixNano":1'),
        /:2: .*startTimeUnixNano is not a decimal string/,
      ],
      [
        good.replace('"0af7651916cd43dd8448eb211c80319c"', '"CvdlGRbNQ92ESOshHIAxnA=="'),
        /:2: .*traceId is not 32 lower-case hex/,
      ],
      [
        good.replace('"attributes":[],"status"', '"attributes":[{"key":"k","value":{"intValue":3}}],"status"'),
        /:2: .*intValue is not a decimal string/,
      ],
      ['{"resourceSpans":{}}', /:2: resourceSpans is not an array/],
    ];
    for (const [bad, re] of cases) {
      const file = join(tmp.dir, "t.jsonl");
      writeFileSync(file, `${good}\n${bad}\n`);
      try {
        readTraceFile(file);
        expect.unreachable(bad);
      } catch (e) {
        expect(e).toBeInstanceOf(TraceFileInvalid);
        expect((e as TraceFileInvalid).line).toBe(2);
        expect((e as TraceFileInvalid).file).toBe(file);
        expect((e as TraceFileInvalid).message).toMatch(re);
      }
    }
    writeFileSync(join(tmp.dir, "ok.jsonl"), `${good}\n\n`);
    expect(readTraceFile(join(tmp.dir, "ok.jsonl"))).toHaveLength(1);
    expect(() => readTraceFile(join(tmp.dir, "absent.jsonl"))).toThrow(TraceFileInvalid);
  });
});

/** Drops what proto3 does not distinguish from absent (empty arrays, empty objects) for comparison. */
function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const n = normalize(x);
      if (Array.isArray(n) && n.length === 0) continue;
      out[k] = n;
    }
    return out;
  }
  return v;
}

// Tracing across the stage processes of a real run (synthesized tiny model, small calibration):
// one trace for the supervisor and every stage, the run → stage → layer → expert → projection
// tree, exactly one calibrate and one quantize span per (layer, expert, projection), each
// quantize span a CONSUMER child of the calibrate span that published its work item, and
// attributes checked against what the model's shapes and the routing imply (not against the
// spans themselves). Once to a --trace-file, once to an OTLP/HTTP listener in the test.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readTraceFile } from "@moeq/telemetry";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeOtlpSpans, otlpListener } from "../libs/telemetry/test/helpers.ts";
import { type CliResult, cli, moeq, tempDir } from "./helpers.ts";

const dir = tempDir("tracing");
const model = join(dir, "model");
const CALIB = { n: 8, t: 32 };
const small = ["--calib", `random:${CALIB.n}x${CALIB.t}`, "--eval", "random:2x32", "--quantizers", "2", "--json"];
const STAGES = ["loader", "router-override", "calibrator", "quantizer", "packer", "evaluator"];
const PROJS = ["gate_proj", "up_proj", "down_proj"];

interface Cfg {
  num_hidden_layers: number;
  num_experts: number;
  num_experts_per_tok: number;
  hidden_size: number;
  moe_intermediate_size: number;
}
let cfg: Cfg;

/** What both exports are reduced to, so the same structural checks run on each. */
interface Span {
  readonly name: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly kind: number;
  readonly service: string;
  readonly resource: Record<string, unknown>;
  readonly attributes: Record<string, unknown>;
}

const num = (v: unknown) => Number(v); // OTLP/HTTP int64 attributes decode as decimal strings

function runWithEnv(args: readonly string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cli, ...args],
      { env, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Without any OTEL_/TRACE variable of the test's own environment: the run decides what is on. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("OTEL_") && !k.startsWith("TRACE")) env[k] = v;
  return { ...env, ...extra };
}

const runIdOf = (out: string) =>
  (JSON.parse(readFileSync(join(`${out}.moeq-work`, "run.json"), "utf8")) as { runId: string }).runId;

/** The checks both tests share; returns the spans by id for test-specific ones. */
function checkTree(spans: readonly Span[], runId: string, algorithm: "gptq" | "rtn") {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  expect(byId.size).toBe(spans.length);
  expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
  for (const s of spans) expect(s.resource["moeq.run_id"]).toBe(runId);

  const runs = spans.filter((s) => s.name === "run");
  expect(runs).toHaveLength(1);
  const run = runs[0];
  expect(run.parentSpanId).toBeUndefined();
  expect(run.service).toBe("supervisor");
  expect(run.attributes["moeq.run_id"]).toBe(runId);
  // every stage process: its own service, a stage span right under the run span
  expect(new Set(spans.map((s) => s.service))).toEqual(new Set(["supervisor", ...STAGES]));
  for (const stage of STAGES) {
    const own = spans.filter((s) => s.name === stage);
    expect(own.length, stage).toBe(stage === "quantizer" ? 2 : 1);
    for (const s of own) {
      expect(s.parentSpanId).toBe(run.spanId);
      expect(s.service).toBe(stage);
      expect(s.resource["moeq.stage"]).toBe(stage);
      expect(s.resource["service.version"]).toMatch(/^\d+\.\d+\.\d+/);
      expect(typeof s.resource["host.name"]).toBe("string");
    }
  }
  // no span points at a parent that is not in the trace
  for (const s of spans) if (s !== run) expect(byId.has(s.parentSpanId!), `${s.service}:${s.name}`).toBe(true);

  const L = cfg.num_hidden_layers;
  const E = cfg.num_experts;
  const H = cfg.hidden_size;
  const I = cfg.moe_intermediate_size;
  const key = (s: Span) =>
    `${num(s.attributes["moeq.layer"])}/${num(s.attributes["moeq.expert"])}/${s.attributes["moeq.proj"]}`;
  const expected = new Set<string>();
  for (let l = 0; l < L; l++) for (let e = 0; e < E; e++) for (const p of PROJS) expected.add(`${l}/${e}/${p}`);

  const calibrate = spans.filter((s) => s.name === "calibrate");
  const quantize = spans.filter((s) => s.name === "quantize");
  expect(calibrate.map(key).sort()).toEqual([...expected].sort());
  expect(quantize.map(key).sort()).toEqual([...expected].sort());

  const tokensPerLayer = new Array<number>(L).fill(0);
  for (const c of calibrate) {
    const [layer, expert] = [num(c.attributes["moeq.layer"]), num(c.attributes["moeq.expert"])];
    expect(c.service).toBe("calibrator");
    const ex = byId.get(c.parentSpanId!)!;
    expect([ex.name, num(ex.attributes["moeq.layer"]), num(ex.attributes["moeq.expert"])]).toEqual([
      "expert",
      layer,
      expert,
    ]);
    const ly = byId.get(ex.parentSpanId!)!;
    expect([ly.name, num(ly.attributes["moeq.layer"])]).toEqual(["layer", layer]);
    expect(byId.get(ly.parentSpanId!)!.name).toBe("calibrator");
    const tokens = num(c.attributes["moeq.tokens_routed"]);
    expect(Number.isInteger(tokens) && tokens >= 0).toBe(true);
    expect(num(c.attributes["moeq.compute_ms"])).toBeGreaterThanOrEqual(0);
    if (algorithm === "gptq") {
      // routed policy: weight 1 per routed token, and a Hessian of the projection's input width
      expect(num(c.attributes["moeq.weight_mass"])).toBeCloseTo(tokens, 3);
      const cols = c.attributes["moeq.proj"] === "down_proj" ? I : H;
      expect(num(c.attributes["moeq.bytes"])).toBe(tokens > 0 ? cols * cols * 4 : 0);
      expect(c.attributes["moeq.algorithm"]).toBe(tokens > 0 ? "gptq" : "rtn");
      if (c.attributes["moeq.proj"] === "gate_proj") tokensPerLayer[layer] += tokens;
    } else {
      expect(c.attributes["moeq.algorithm"]).toBe("rtn");
    }
  }
  // every calibration token goes to exactly top-k experts
  if (algorithm === "gptq")
    expect(tokensPerLayer).toEqual(new Array(L).fill(CALIB.n * CALIB.t * cfg.num_experts_per_tok));

  // per layer: load (loader) and route (router-override), each under a layer span of its stage
  for (const [op, stage] of [
    ["load", "loader"],
    ["route", "router-override"],
  ]) {
    const ops = spans.filter((s) => s.name === op);
    // RTN with full-precision propagation asks for no routing plan
    const layers = op === "route" && algorithm === "rtn" ? [] : [...Array(L).keys()];
    expect(ops.map((s) => num(s.attributes["moeq.layer"])).sort(), op).toEqual(layers);
    for (const s of ops) {
      const ly = byId.get(s.parentSpanId!)!;
      expect([ly.name, num(ly.attributes["moeq.layer"]), s.service]).toEqual([
        "layer",
        num(s.attributes["moeq.layer"]),
        stage,
      ]);
      expect(byId.get(ly.parentSpanId!)!.name).toBe(stage);
      if (op === "load") expect(num(s.attributes["moeq.bytes"])).toBeGreaterThan(3 * E * H * I * 2); // bf16 experts at least
      if (op === "route")
        expect(num(s.attributes["moeq.tokens_routed"])).toBe(CALIB.n * CALIB.t * cfg.num_experts_per_tok);
    }
  }
  // The packer writes each layer's part as the layer finishes (layer 0's together with the
  // model-level tensors: two parts), then assembles the shards from the parts: L + 2 pack spans.
  const packs = spans.filter((s) => s.name === "pack");
  expect(packs).toHaveLength(L + 2);
  for (const p of packs) expect(byId.get(p.parentSpanId!)!.name).toBe("packer");
  expect(packs.map((p) => p.attributes["moeq.layer"]).filter((l) => l !== undefined).map(num).sort()).toEqual([
    0,
    0,
    ...[...Array(L).keys()].slice(1),
  ]);
  for (const p of packs) expect(num(p.attributes["moeq.bytes"])).toBeGreaterThan(0);
  const evaluate = spans.filter((s) => s.name === "evaluate");
  expect(evaluate).toHaveLength(1);
  expect(byId.get(evaluate[0].parentSpanId!)!.name).toBe("evaluator");
  const kld = num(spans.find((s) => s.name === "evaluate")!.attributes["moeq.loss"]);
  expect(Number.isFinite(kld) && kld >= 0).toBe(true);

  for (const q of quantize) {
    expect(q.service).toBe("quantizer");
    expect(q.kind).toBe(5); // CONSUMER
    const parent = byId.get(q.parentSpanId!)!;
    expect(parent.name).toBe("calibrate");
    expect(key(parent)).toBe(key(q));
    expect(q.attributes["moeq.algorithm"]).toBe(parent.attributes["moeq.algorithm"]);
    const down = q.attributes["moeq.proj"] === "down_proj";
    const [rows, cols] = down ? [H, I] : [I, H];
    // codes u8 [rows, cols] + f32 scales and i32 zero points [rows, cols / 32] + i32 g_idx [cols]
    expect(num(q.attributes["moeq.bytes"])).toBe(rows * cols + 2 * 4 * rows * (cols / 32) + 4 * cols);
    const loss = num(q.attributes["moeq.loss"]);
    expect(Number.isFinite(loss) && loss > 0).toBe(true);
    expect(num(q.attributes["moeq.queue_wait_ms"])).toBeGreaterThanOrEqual(0);
    expect(num(q.attributes["moeq.compute_ms"])).toBeGreaterThan(0);
  }
}

beforeAll(async () => {
  const s = await moeq([
    "synth",
    "--arch",
    "qwen3_moe",
    "--preset",
    "tiny",
    "--layers",
    "2",
    "--seed",
    "11",
    "--out",
    model,
  ]);
  expect(s.code, s.stderr).toBe(0);
  cfg = JSON.parse(readFileSync(join(model, "config.json"), "utf8")) as Cfg;
}, 120_000);

describe("tracing a pipeline run", () => {
  it("--trace-file: every process appends to one file, one trace, one calibrate and one quantize span per projection", async () => {
    const out = join(dir, "gptq");
    const file = join(dir, "trace.jsonl");
    const r = await runWithEnv(
      ["quantize", model, "--out", out, ...small, "--algo", "gptq", "--policy", "routed", "--trace-file", file],
      cleanEnv(),
    );
    expect(r.code, r.stderr.slice(-4000)).toBe(0);
    const spans: Span[] = readTraceFile(file).map((s) => ({
      name: s.name,
      traceId: s.traceId,
      spanId: s.spanId,
      parentSpanId: s.parentSpanId,
      kind: s.kind,
      service: s.serviceName ?? "",
      resource: s.resource as Record<string, unknown>,
      attributes: s.attributes as Record<string, unknown>,
    }));
    checkTree(spans, runIdOf(out), "gptq");
  }, 600_000);

  it("OTLP/HTTP: every process posts protobuf to the collector of OTEL_EXPORTER_OTLP_ENDPOINT", async () => {
    const rx = await otlpListener();
    try {
      const out = join(dir, "rtn");
      const r = await runWithEnv(
        ["quantize", model, "--out", out, ...small, "--algo", "rtn"],
        cleanEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: rx.url }),
      );
      expect(r.code, r.stderr.slice(-4000)).toBe(0);
      expect(rx.received.length).toBeGreaterThan(0);
      const spans: Span[] = [];
      for (const req of rx.received) {
        expect([req.method, req.path, req.headers["content-type"]]).toEqual([
          "POST",
          "/v1/traces",
          "application/x-protobuf",
        ]);
        for (const s of decodeOtlpSpans(req.body))
          spans.push({
            name: s.name,
            traceId: s.traceId!,
            spanId: s.spanId!,
            parentSpanId: s.parentSpanId,
            kind: s.kind,
            service: String(s.resource["service.name"]),
            resource: s.resource,
            attributes: s.attributes,
          });
      }
      checkTree(spans, runIdOf(out), "rtn");
    } finally {
      await rx.close();
    }
  }, 600_000);
});

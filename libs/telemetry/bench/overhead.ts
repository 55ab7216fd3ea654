// Tracing overhead on the trained model: RTN-quantizes every expert projection of
// ../shared/models/tiny-qwen3moe-brown (4 layers × 32 experts × 3 projections) inside the span tree a
// quantizer stage writes (stage → layer → expert → projection with its attributes), with tracing
// off, to a trace file, to an OTLP/HTTP listener, and to both. Modes are interleaved over --reps
// rounds; the median of each is compared with "off" measured in the same run, shutdown (the final
// flush) included. Both wall time and process CPU time (all threads) are reported; the gate uses CPU
// time by default because wall time on a shared machine mostly measures the neighbours. Exits 1
// when any mode costs more than --target (default 1.05 = +5 %) of off.
//   node libs/telemetry/bench/overhead.ts [--reps 7] [--target 1.05] [--gate cpu|wall] [--clip minmax|mse] [--model DIR]
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { quantizeIntRtn } from "@moeq/quant";
import { openCheckpoint } from "@moeq/safetensors";
import { expertSpan, initTelemetry, layerSpan, projectionSpan, setWork, stageSpan } from "../src/index.ts";

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const reps = Number(arg("reps", "7"));
const target = Number(arg("target", "1.05"));
const clip = arg("clip", "minmax") as "minmax" | "mse";
const gate = arg("gate", "cpu") as "cpu" | "wall";
const modelDir = arg("model", join(here, "..", "..", "..", "..", "shared", "models", "tiny-qwen3moe-brown"));

// Weights decoded once, outside the timed region: the benchmark times quantization + tracing.
const ckpt = openCheckpoint(modelDir);
const work: { layer: number; expert: number; proj: string; w: Float32Array; rows: number; cols: number }[] = [];
for (const name of ckpt.names()) {
  const m = /^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(\w+_proj)\.weight$/.exec(name);
  if (!m) continue;
  const [rows, cols] = ckpt.entry(name).shape;
  work.push({ layer: Number(m[1]), expert: Number(m[2]), proj: m[3], w: ckpt.f32(name), rows, cols });
}
ckpt.close();
work.sort((a, b) => a.layer - b.layer || a.expert - b.expert || a.proj.localeCompare(b.proj));
const layers = [...new Set(work.map((x) => x.layer))];
const experts = [...new Set(work.map((x) => x.expert))];

async function quantizeAll(): Promise<number> {
  let sink = 0;
  await stageSpan(async () => {
    for (const layer of layers)
      await layerSpan(layer, async () => {
        for (const expert of experts)
          await expertSpan(layer, expert, async () => {
            for (const x of work) {
              if (x.layer !== layer || x.expert !== expert) continue;
              await projectionSpan("quantize", { layer, expert, proj: x.proj, algorithm: `rtn-${clip}`, tokensRouted: 0 }, (span) => {
                const r = quantizeIntRtn(x.w, x.rows, x.cols, { bits: 4, groupSize: 128, symmetric: false, clip, name: `${layer}.${expert}.${x.proj}` });
                let err = 0;
                for (let i = 0; i < x.w.length; i++) err += (r.dequant[i] - x.w[i]) ** 2;
                sink += err;
                setWork(span, { loss: err / x.w.length, bytes: r.codes.length / 2 + r.scales.length * 2 + r.zeros.length });
              });
            }
          });
      });
  });
  return sink;
}

const received = { requests: 0, bytes: 0 };
const server = createServer((req, res) => {
  req.on("data", (c: Buffer) => (received.bytes += c.length));
  req.on("end", () => {
    received.requests++;
    res.writeHead(200).end();
  });
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
const dir = mkdtempSync(join(tmpdir(), "moeq-trace-bench-"));

type Mode = "off" | "file" | "otlp" | "file+otlp";
const modes: Mode[] = ["off", "file", "otlp", "file+otlp"];
const wall: Record<Mode, number[]> = { off: [], file: [], otlp: [], "file+otlp": [] };
const cpu: Record<Mode, number[]> = { off: [], file: [], otlp: [], "file+otlp": [] };
let fileBytes = 0;

async function once(mode: Mode, rep: number): Promise<{ wall: number; cpu: number }> {
  const traceFile = mode.includes("file") ? join(dir, `${mode}-${rep}.jsonl`) : undefined;
  const env = mode.includes("otlp") ? { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint } : {};
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const t = initTelemetry({ serviceName: "quantizer", runId: "bench", stageVersion: "bench", env, ...(traceFile ? { traceFile } : {}) });
  await quantizeAll();
  await t.shutdown();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  if (traceFile) fileBytes = statSync(traceFile).size;
  return { wall: ms, cpu: (c.user + c.system) / 1000 };
}

try {
  await once("off", -1); // warm-up: JIT, page-in
  for (let rep = 0; rep < reps; rep++)
    for (const mode of rep % 2 ? [...modes].reverse() : modes) {
      const r = await once(mode, rep);
      wall[mode].push(r.wall);
      cpu[mode].push(r.cpu);
    }
} finally {
  server.close();
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const spans = 1 + layers.length + layers.length * experts.length + work.length;
const offWall = median(wall.off);
const offCpu = median(cpu.off);
console.log(`model ${modelDir}: ${work.length} projections, ${spans} spans per run, RTN int4 g128 clip=${clip}, ${reps} rounds`);
console.log(`trace file: ${(fileBytes / 1024).toFixed(0)} KiB per run; OTLP: ${received.requests} requests, ${(received.bytes / 1024).toFixed(0)} KiB in all`);
let ok = true;
for (const mode of modes) {
  const [w, c] = [median(wall[mode]), median(cpu[mode])];
  const ratio = { wall: w / offWall, cpu: c / offCpu };
  const pass = mode === "off" || ratio[gate] <= target;
  ok &&= pass;
  const perSpan = (x: number, base: number) => `${(((x - base) * 1000) / spans).toFixed(1)} µs/span`;
  console.log(
    `${mode.padEnd(10)} wall ${w.toFixed(1).padStart(8)} ms  ×${ratio.wall.toFixed(3)}${mode === "off" ? "" : ` (${perSpan(w, offWall)})`}   cpu ${c.toFixed(1).padStart(8)} ms  ×${ratio.cpu.toFixed(3)}${mode === "off" ? "" : ` (${perSpan(c, offCpu)})`}${pass ? "" : `  FAIL: ${gate} > ${target}`}`,
  );
}
console.log(ok ? `PASS: every mode within ${target}× of off (${gate} time)` : `FAIL: a mode exceeds ${target}× of off (${gate} time)`);
process.exit(ok ? 0 : 1);

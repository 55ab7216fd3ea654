// Tracing overhead of a whole pipeline run: `moeq quantize` on the trained model (RTN, modest
// calibration and evaluation) with tracing off and with --trace-file, alternating, N rounds each.
// Compares the best round of each (wall time of the run; CPU time summed over every stage
// process from the run's stats/) and exits 1 when tracing costs more than --target.
//
//   node libs/telemetry/bench/run-overhead.ts [--rounds 2] [--target 1.05] [--metric cpu|wall]
//        [--model ../shared/models/tiny-qwen3moe-brown] [--calib brown:32x128] [--eval brown:8x128]
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const { values: a } = parseArgs({
  options: {
    rounds: { type: "string", default: "2" },
    target: { type: "string", default: "1.05" },
    metric: { type: "string", default: "cpu" },
    model: { type: "string", default: join(root, "..", "shared", "models", "tiny-qwen3moe-brown") },
    calib: { type: "string", default: "brown:32x128" },
    eval: { type: "string", default: "brown:8x128" },
  },
});
const rounds = Number(a.rounds);
const target = Number(a.target);
if (!Number.isInteger(rounds) || rounds < 1 || !(target >= 1) || !["cpu", "wall"].includes(a.metric!))
  throw new Error("--rounds must be a positive integer, --target ≥ 1, --metric cpu|wall");

interface Round {
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly spans: number;
}

function moeq(args: string[]): Promise<void> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("OTEL_") && !k.startsWith("TRACE")) env[k] = v;
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [join(root, "libs", "cli", "dist", "main.js"), ...args],
      { env, maxBuffer: 64 << 20 },
      (err, _out, stderr) =>
        err ? reject(new Error(`moeq ${args.join(" ")} failed: ${stderr.slice(-2000)}`)) : resolve(),
    ),
  );
}

async function once(traced: boolean): Promise<Round> {
  const dir = mkdtempSync(join(tmpdir(), "moeq-run-overhead-"));
  try {
    const out = join(dir, "out");
    const file = join(dir, "trace.jsonl");
    const t0 = performance.now();
    await moeq([
      "quantize",
      a.model!,
      "--out",
      out,
      "--algo",
      "rtn",
      "--calib",
      a.calib!,
      "--eval",
      a.eval!,
      "--json",
      ...(traced ? ["--trace-file", file] : []),
    ]);
    const wallMs = performance.now() - t0;
    const stats = join(`${out}.moeq-work`, "stats");
    let cpuMs = 0;
    for (const f of readdirSync(stats)) {
      const s = JSON.parse(readFileSync(join(stats, f), "utf8")) as { userSeconds: number; systemSeconds: number };
      cpuMs += (s.userSeconds + s.systemSeconds) * 1000;
    }
    const spans = traced
      ? readFileSync(file, "utf8")
          .split("\n")
          .filter(Boolean)
          .reduce((n, line) => n + (line.match(/"spanId"/g)?.length ?? 0), 0)
      : 0;
    return { wallMs, cpuMs, spans };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const off: Round[] = [];
const on: Round[] = [];
for (let r = 0; r < rounds; r++) {
  // alternate which mode goes first, so a drift in machine load hits both alike
  for (const traced of r % 2 === 0 ? [false, true] : [true, false]) {
    const x = await once(traced);
    (traced ? on : off).push(x);
    console.log(
      `round ${r + 1} ${traced ? "trace file" : "off       "}: wall ${x.wallMs.toFixed(0)} ms, stage CPU ${x.cpuMs.toFixed(0)} ms${traced ? `, ${x.spans} spans` : ""}`,
    );
  }
}
const best = (xs: Round[], k: "wallMs" | "cpuMs") => Math.min(...xs.map((x) => x[k]));
const ratio = { wall: best(on, "wallMs") / best(off, "wallMs"), cpu: best(on, "cpuMs") / best(off, "cpuMs") };
const spans = on[0].spans;
console.log(
  `best of ${rounds}: off wall ${best(off, "wallMs").toFixed(0)} ms, CPU ${best(off, "cpuMs").toFixed(0)} ms`,
);
console.log(
  `best of ${rounds}: trace file wall ${best(on, "wallMs").toFixed(0)} ms (×${ratio.wall.toFixed(3)}), CPU ${best(on, "cpuMs").toFixed(0)} ms (×${ratio.cpu.toFixed(3)}), ${spans} spans, ${(((best(on, "cpuMs") - best(off, "cpuMs")) * 1000) / Math.max(1, spans)).toFixed(0)} µs CPU per span`,
);
const got = ratio[a.metric as "cpu" | "wall"];
if (got > target) {
  console.log(`FAIL: tracing costs ×${got.toFixed(3)} ${a.metric}, above the target ×${target}`);
  process.exit(1);
}
console.log(`OK: ×${got.toFixed(3)} ${a.metric} ≤ ×${target}`);

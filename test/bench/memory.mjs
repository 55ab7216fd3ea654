// Memory and disk of `moeq quantize` on a Qwen3-30B-A3B-shaped model (the product command, CPU):
// for each layer count (default 2 and 4) it synthesizes the model (`moeq synth --preset
// qwen3-30b-a3b`, tokenizer.json of the trained tiny model copied beside it so `brown:` text
// works), runs GPTQ W4A16 g128 on `brown:16x512` calibration windows, and prints each stage
// process's peak RSS (VmHWM, from the run's summary), the largest resident set of any process of
// the run (GNU time's maximum of the supervisor and the children it reaped: stages, nats-server),
// the work dir's peak size (sampled every second), each layer's artifacts (the packer's log) and
// the output's size, with the load average before and after.
// Exit status 0 when the goals of issue 21 hold: every process ≤ 6 GiB, work dir peak ≤ 2 layers
// of artifacts + the output, peak RSS of the smallest vs the largest layer count within 10 %.
// Usage: node test/bench/memory.mjs [dir] [layers...]   (ALGO=rtn; EXTRA="--policy routed" adds flags)
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = join(root, "libs", "cli", "dist", "main.js");
const trained = join(root, "..", "shared", "models", "tiny-qwen3moe-brown");
const dir = process.argv[2] ?? "/tmp/moeq-bench-memory";
const layerCounts = process.argv.slice(3).map(Number);
if (layerCounts.length === 0) layerCounts.push(2, 4);
const extra = (process.env.EXTRA ?? "").split(" ").filter(Boolean);
const MiB = 2 ** 20;
mkdirSync(dir, { recursive: true });

const duBytes = (p) => {
  let n = 0;
  let st;
  try {
    st = lstatSync(p);
  } catch {
    return 0;
  }
  if (st.isDirectory()) for (const f of readdirSync(p)) n += duBytes(join(p, f));
  else n += st.blocks * 512;
  return n;
};
const load = () =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(" ");

async function run(layers) {
  const model = join(dir, `qwen3-30b-a3b-L${layers}`);
  if (!existsSync(join(model, "config.json")))
    execFileSync(
      process.execPath,
      [
        cli,
        "synth",
        "--arch",
        "qwen3_moe",
        "--preset",
        "qwen3-30b-a3b",
        "--layers",
        String(layers),
        "--seed",
        "0",
        "--out",
        model,
      ],
      { stdio: "inherit" },
    );
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(trained, f), join(model, f));
  const out = join(dir, `out-L${layers}`);
  const work = `${out}.moeq-work`;
  execFileSync("rm", ["-rf", out, work]);
  const loadBefore = load();
  const args = [
    "quantize",
    model,
    "--out",
    out,
    "--algo",
    process.env.ALGO ?? "gptq",
    "--scheme",
    "w4a16",
    "--group-size",
    "128",
    "--calib",
    "brown:16x512",
    "--eval",
    "brown:4x256",
    "--batch-windows",
    "4",
    ...extra,
    "--json",
  ];
  const t0 = Date.now();
  const child = spawn("/usr/bin/time", ["-v", process.execPath, cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b) => (stdout += b));
  child.stderr.on("data", (b) => (stderr += b));
  let workPeak = 0;
  const sampler = setInterval(() => (workPeak = Math.max(workPeak, duBytes(work))), 1000);
  const code = await new Promise((r) => child.on("exit", r));
  clearInterval(sampler);
  if (code !== 0) throw new Error(`moeq quantize (${layers} layers) exited ${code}:\n${stderr.slice(-3000)}`);
  const summary = JSON.parse(stdout);
  const maxRssKiB = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1] ?? 0);
  const packerLog = readFileSync(join(work, "logs", "packer.0.log"), "utf8");
  const artifacts = [
    ...packerLog.matchAll(/layer (\d+) packed \(([\d.]+) MiB\), ([\d.]+) MiB of artifacts deleted/g),
  ].map((m) => ({
    layer: Number(m[1]),
    partMiB: Number(m[2]),
    artifactsMiB: Number(m[3]),
  }));
  const stages = Object.fromEntries(
    summary.stages.map((s) => [s.stage, Math.max(...s.instances.map((i) => i.peakRssMiB))]),
  );
  return {
    layers,
    status: summary.status,
    seconds: (Date.now() - t0) / 1000,
    loadBefore,
    loadAfter: load(),
    stages,
    maxRssMiB: maxRssKiB / 1024,
    workPeakMiB: workPeak / MiB,
    artifacts,
    outputMiB: duBytes(out) / MiB,
    kld: summary.kld?.kld?.mean,
    estimate: JSON.parse(readFileSync(join(work, "report", "estimate.json"), "utf8")),
  };
}

const results = [];
for (const L of layerCounts) {
  const r = await run(L);
  results.push(r);
  console.log(
    `\n${L} layers: ${r.status} in ${r.seconds.toFixed(0)} s, load average ${r.loadBefore} → ${r.loadAfter}, mean KLD ${r.kld}`,
  );
  console.log("| process | peak RSS (MiB) |\n|---|---|");
  for (const [s, m] of Object.entries(r.stages)) console.log(`| ${s} | ${m.toFixed(0)} |`);
  console.log(`| any process of the run (GNU time max) | ${r.maxRssMiB.toFixed(0)} |`);
  const biggest = Math.max(...r.artifacts.map((a) => a.artifactsMiB));
  console.log(
    `work dir peak ${r.workPeakMiB.toFixed(0)} MiB; output ${r.outputMiB.toFixed(0)} MiB; artifacts per layer ${r.artifacts.map((a) => a.artifactsMiB.toFixed(0)).join(", ")} MiB (largest ${biggest.toFixed(0)})`,
  );
}

let ok = true;
const fail = (why) => {
  ok = false;
  console.log(`GOAL NOT MET: ${why}`);
};
for (const r of results) {
  if (r.maxRssMiB > 6 * 1024) fail(`${r.layers} layers: a process peaked at ${r.maxRssMiB.toFixed(0)} MiB > 6 GiB`);
  const bound = 2 * Math.max(...r.artifacts.map((a) => a.artifactsMiB)) + r.outputMiB;
  if (r.workPeakMiB > bound)
    fail(
      `${r.layers} layers: work dir peak ${r.workPeakMiB.toFixed(0)} MiB > 2 layers of artifacts + output = ${bound.toFixed(0)} MiB`,
    );
}
if (results.length > 1) {
  const a = results[0];
  const b = results.at(-1);
  const ratio = b.maxRssMiB / a.maxRssMiB;
  console.log(
    `\npeak RSS ${b.layers} vs ${a.layers} layers: ${b.maxRssMiB.toFixed(0)} / ${a.maxRssMiB.toFixed(0)} MiB = ${ratio.toFixed(3)}`,
  );
  for (const s of Object.keys(a.stages)) console.log(`  ${s}: ${(b.stages[s] / a.stages[s]).toFixed(3)}`);
  if (ratio > 1.1) fail(`peak RSS grows ${((ratio - 1) * 100).toFixed(1)} % from ${a.layers} to ${b.layers} layers`);
}
console.log(ok ? "\nall goals met" : "\nsome goals not met");
process.exit(ok ? 0 : 1);

#!/usr/bin/env node
// Pipeline benchmark: wall time per stage and per layer, peak RSS per process, on the trained
// model and on synthesized tiny4x models (4× the trained model's parameters per layer) with 2
// and 8 layers. Reference in the same run: the calibrator's peak RSS on 8 layers must stay within
// 1.3× its peak on 2 layers (it holds one layer's weights and the activations, never the model).
// Usage: node test/bench/pipeline.mjs [--skip-trained]   (writes a markdown table to stdout)
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = join(root, "libs", "cli", "dist", "main.js");
const dir = mkdtempSync(join(tmpdir(), "moeq-bench-pipeline-"));
const moeq = (...args) =>
  execFileSync(process.execPath, [cli, ...args], {
    encoding: "utf8",
    maxBuffer: 256 << 20,
    stdio: ["ignore", "pipe", "inherit"],
  });

function run(name, model, extra) {
  const t0 = Date.now();
  const s = JSON.parse(moeq("quantize", model, "--out", join(dir, name), "--json", ...extra));
  if (s.status !== "completed") throw new Error(`${name}: ${s.status} ${s.error ?? ""}`);
  return { name, wall: (Date.now() - t0) / 1000, s };
}

const results = [];
if (!process.argv.includes("--skip-trained"))
  results.push(run("trained-gptq", join(root, "..", "shared", "models", "tiny-qwen3moe-brown"), ["--algo", "gptq"]));
for (const layers of [2, 8]) {
  const model = join(dir, `tiny4x-${layers}`);
  moeq("synth", "--preset", "tiny4x", "--layers", String(layers), "--out", model);
  results.push(
    run(`tiny4x-${layers}L`, model, ["--algo", "gptq", "--calib", "random:64x256", "--eval", "random:16x256"]),
  );
}

const lines = [];
for (const { name, wall, s } of results) {
  lines.push(
    `### ${name}: ${wall.toFixed(1)} s wall, model ${(s.model.bytes / 1e6).toFixed(1)} MB → ${(s.output.bytes / 1e6).toFixed(1)} MB, mean KLD ${s.kld.kld.mean.toFixed(5)}`,
    "",
  );
  lines.push("| stage | wall s | peak RSS (MiB) per process |", "|---|---|---|");
  for (const st of s.stages)
    lines.push(
      `| ${st.stage} | ${st.seconds.toFixed(1)} | ${st.instances.map((i) => i.peakRssMiB.toFixed(0)).join(", ")} |`,
    );
  lines.push("", "| layer | calibrate s | quantize s (sum) |", "|---|---|---|");
  for (const l of s.layers) lines.push(`| ${l.layer} | ${l.calibSeconds.toFixed(2)} | ${l.quantSeconds.toFixed(2)} |`);
  lines.push("");
}
const rss = (name) =>
  results.find((r) => r.name === name).s.stages.find((x) => x.stage === "calibrator").instances[0].peakRssMiB;
const ratio = rss("tiny4x-8L") / rss("tiny4x-2L");
lines.push(`calibrator peak RSS, 8 layers / 2 layers: ${ratio.toFixed(2)} (target ≤ 1.30)`);
console.log(lines.join("\n"));
if (ratio > 1.3) {
  console.error(`FAIL: calibrator memory grows with depth (${ratio.toFixed(2)}×)`);
  process.exit(1);
}

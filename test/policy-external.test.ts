// A graph whose router-override uses a calibration policy written as a separate process
// (test/custom-policy/policy.mjs, protocol moeq-policy/1): the run completes, its routing plans
// name the external policy, and the shards are byte-identical to the built-in policy the
// process re-implements (mix:0.25). A process that answers with a short file fails the run with
// a message naming the file.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { logOf, moeq, root, shardHashes, tempDir } from "./helpers.ts";

const dir = tempDir("policy");
const model = join(dir, "model");
const windows = ["--calib", "random:8x64", "--eval", "random:2x64", "--quantizers", "1"];
const script = join(root, "test", "custom-policy", "policy.mjs");

function graphWith(policy: string, file: string): string {
  const stages = ["loader", "router-override", "calibrator", "quantizer", "packer", "evaluator"].map((name) => ({
    name,
    manifest: join(root, "stages", name, "manifest.json"),
    ...(name === "router-override" ? { options: { policy } } : {}),
  }));
  writeFileSync(file, JSON.stringify({ version: 1, stages }, null, 2));
  return file;
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
}, 120_000);

describe("custom calibration policy in its own process", () => {
  it("a graph with the external policy gives the shards of the built-in policy it re-implements", async () => {
    const builtIn = await moeq([
      "quantize",
      model,
      "--out",
      join(dir, "mix"),
      ...windows,
      "--policy",
      "mix:0.25",
      "--json",
    ]);
    expect(builtIn.code, builtIn.stderr).toBe(0);
    const work = join(dir, "external.moeq-work");
    const ext = await moeq([
      "quantize",
      model,
      "--out",
      join(dir, "external"),
      ...windows,
      "--work-dir",
      work,
      "--graph",
      graphWith(`external:${script} --floor 0.25`, join(dir, "graph.json")),
      "--json",
    ]);
    expect(ext.code, ext.stderr + logOf(work, "router-override")).toBe(0);
    expect(shardHashes(join(dir, "external"))).toEqual(shardHashes(join(dir, "mix")));
    const log = logOf(work, "router-override");
    expect(log).toContain(`with policy external:${script} --floor 0.25`);
    expect(log).toMatch(/\[policy\] layer 1: 512 tokens × 32 experts \(softmax_topk\)/);
    // the coverage in the summary comes from the external policy's weights: every expert uses every token
    const summary = JSON.parse(ext.stdout) as {
      coverage: { policy: string; layers: { uncalibrated: number; minUsed: number }[] };
    };
    expect(summary.coverage.policy).toBe(`external:${script} --floor 0.25`);
    for (const l of summary.coverage.layers) expect([l.uncalibrated, l.minUsed]).toEqual([0, 512]);
    const report = JSON.parse(readFileSync(join(work, "report", "report.json"), "utf8")) as {
      settings: { policy: string };
    };
    expect(report.settings.policy).toBe(`external:${script} --floor 0.25`);
  }, 1_500_000);

  it("a policy process that writes a short answer fails the run, naming the file", async () => {
    const work = join(dir, "bad.moeq-work");
    const r = await moeq([
      "quantize",
      model,
      "--out",
      join(dir, "bad"),
      ...windows,
      "--work-dir",
      work,
      "--graph",
      graphWith(`external:${script} --bad-size`, join(dir, "bad.json")),
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(
      /L0\.out\.bin: 65532 bytes from policy process .* expected 512×32 f32 = 65536/,
    );
  }, 1_500_000);
});

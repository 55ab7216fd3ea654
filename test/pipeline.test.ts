// The pipeline's robustness on a synthesized tiny model (fast): SIGKILL of every stage process
// mid-run still ends in byte-identical shards, an interrupted supervisor is resumed from the
// events, the standalone alternative quantizer can replace ours, and `moeq synth` writes a model
// that `moeq inspect` accepts.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { moeq, moeqSpawn, root, shardHashes, tempDir, waitForLog } from "./helpers.ts";

const dir = tempDir("pipeline");
const model = join(dir, "model");
// Small windows keep a run at a few seconds of compute.
const windows = ["--calib", "random:16x64", "--eval", "random:4x64", "--quantizers", "2"];
let baseline: Record<string, string> = {};

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
    "7",
    "--out",
    model,
  ]);
  expect(s.code, s.stderr).toBe(0);
  const r = await moeq(["quantize", model, "--out", join(dir, "baseline"), ...windows, "--json"]);
  expect(r.code, r.stderr).toBe(0);
  baseline = shardHashes(join(dir, "baseline"));
  expect(Object.keys(baseline).length).toBeGreaterThan(0);
}, 600_000);

/** The evaluator pauses once, right after the marker the kill test waits for, and then finishes;
 *  the packer pauses before each layer it packs, and little work may follow its marker on a small
 *  model: their pauses are long enough that the kill always lands while they still work. */
const ONE_PAUSE_MS = 2_000;

function pausedGraph(file: string, pauseMs: number): string {
  const stages = ["loader", "router-override", "calibrator", "quantizer", "packer", "evaluator"].map((name) => ({
    name,
    manifest: join(root, "stages", name, "manifest.json"),
    replicas: name === "quantizer" ? 2 : 1,
    // ackWaitMs: an item held by a SIGKILLed quantizer comes back after 20 s instead of 120 s.
    options:
      name === "quantizer"
        ? { pauseMs, ackWaitMs: 20_000 }
        : { pauseMs: name === "packer" || name === "evaluator" ? Math.max(pauseMs, ONE_PAUSE_MS) : pauseMs },
  }));
  writeFileSync(file, JSON.stringify({ version: 1, stages }, null, 2));
  return file;
}

describe("pipeline on a synthesized model", () => {
  it("moeq synth writes a checkpoint moeq inspect accepts", async () => {
    const r = await moeq(["inspect", model, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("qwen3_moe");
  }, 120_000);

  it("SIGKILL of each stage in turn mid-run: the run completes with byte-identical shards", async () => {
    const out = join(dir, "killed");
    const work = `${out}.moeq-work`;
    const graph = pausedGraph(join(dir, "paused.json"), 150);
    const run = moeqSpawn(["quantize", model, "--out", out, ...windows, "--graph", graph, "--json"]);
    // Each kill lands while that stage is in the middle of its work (see the log markers).
    const kills: [string, RegExp][] = [
      ["loader", /layer 0: \d+ tensors/],
      ["router-override", /planning layer 0/],
      ["quantizer", /quantized \d+\/\d+\//],
      ["calibrator", /layer 0 done/],
      ["packer", /layer 0 packed/],
      ["evaluator", /evaluating /],
    ];
    const killed: string[] = [];
    for (const [stage, marker] of kills) {
      const pid = await waitForLog(work, stage, marker);
      // every stage must really be killed mid-work: a process already gone (ESRCH) fails the test
      process.kill(pid, "SIGKILL");
      killed.push(stage);
    }
    const r = await run.done;
    expect(r.code, `${r.stderr}\n${r.stdout.slice(-2000)}`).toBe(0);
    const summary = JSON.parse(r.stdout) as {
      status: string;
      stages: { stage: string; instances: { restarts: number }[] }[];
    };
    expect(summary.status).toBe("completed");
    expect(killed).toEqual(kills.map(([stage]) => stage));
    for (const s of killed)
      expect(
        summary.stages.find((x) => x.stage === s)!.instances.some((i) => i.restarts > 0),
        s,
      ).toBe(true);
    expect(shardHashes(out)).toEqual(baseline);
  }, 600_000);

  it("resume continues a run whose supervisor was killed, with identical shards", async () => {
    const out = join(dir, "resumed");
    const work = `${out}.moeq-work`;
    const graph = pausedGraph(join(dir, "paused-resume.json"), 300);
    const run = moeqSpawn(["quantize", model, "--out", out, ...windows, "--graph", graph, "--json"]);
    await waitForLog(work, "calibrator", /layer 0 done/);
    run.child.kill("SIGKILL");
    await run.done;
    const r = await moeq(["resume", work, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { status: string }).status).toBe("completed");
    expect(shardHashes(out)).toEqual(baseline);
  }, 600_000);

  it("the alternative quantizer (no moeq libraries) runs the graph end to end, bit-exact with our RTN", async () => {
    const ours = join(dir, "rtn");
    const a = await moeq(["quantize", model, "--out", ours, ...windows, "--algo", "rtn", "--json"]);
    expect(a.code, a.stderr).toBe(0);
    const alt = join(dir, "alt");
    const b = await moeq([
      "quantize",
      model,
      "--out",
      alt,
      ...windows,
      "--algo",
      "rtn",
      "--graph",
      join(root, "test", "alt-quantizer", "graph.yaml"),
      "--json",
    ]);
    expect(b.code, b.stderr).toBe(0);
    const log = (await import("node:fs")).readFileSync(join(`${alt}.moeq-work`, "logs", "quantizer.0.log"), "utf8");
    expect(log).toContain("alt-quantizer.0 consuming quantize work");
    expect(shardHashes(alt)).toEqual(shardHashes(ours));
  }, 600_000);

  it("moeq graph validate accepts the alternative graph and names what is wrong in a bad one", async () => {
    const ok = await moeq(["graph", "validate", join(root, "test", "alt-quantizer", "graph.yaml")]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/quantizer\s+×2\s+node .*alt-quantizer\/main\.mjs/);
    const bad = join(dir, "bad-graph.json");
    writeFileSync(bad, JSON.stringify({ version: 1, stages: [{ name: "loader" }, { name: "calibrator" }] }));
    const r = await moeq(["graph", "validate", bad]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no router-override stage/);
  }, 120_000);
});

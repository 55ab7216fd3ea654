// End to end on the two new token-mixer families: `moeq quantize` (RTN W4 g16 over every
// quantizable linear; the run ends with its evaluation, i.e. the engine's forward of the packed
// checkpoint against the fixture) of deepseek_v32 (MLA + DSA indexer + noaux_tc routing) and
// qwen3_5_moe_text (Gated DeltaNet + gated attention), and `moeq eval` of a written checkpoint
// reproducing the run's KLD. Runs the real launcher (stage processes over an embedded
// nats-server). All seven hard fixtures, with GPTQ and calibration:
// libs/models/bench/hard-e2e.sh (about a minute per model; every one passed, see the report).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot, tinyRandom } from "./fixtures.ts";

const HARD = ["deepseek_v32", "qwen3_5_moe_text"];
const work = mkdtempSync(join(tmpdir(), "moeq-hard-e2e-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function moeq(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(join(repoRoot, "moeq"), args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => {
      stdout += d;
    });
    p.stderr.on("data", (d) => {
      stderr += d;
    });
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

interface Run {
  readonly status: string;
  readonly model: { readonly arch: string };
  readonly kld: { readonly kld: { readonly mean: number } };
}

async function quantize(arch: string): Promise<Run> {
  const r = await moeq([
    "quantize",
    join(tinyRandom, arch),
    "--out",
    join(work, arch),
    "--algo",
    "rtn",
    "--eval",
    "random:2x32",
    "--targets",
    "all-linear",
    "--group-size",
    "16",
    "--json",
  ]);
  expect(r.code, `${arch}: ${r.stderr.slice(-2000)}`).toBe(0);
  return JSON.parse(r.stdout) as Run;
}

describe("moeq quantize + eval on the hard architectures", { timeout: 600_000 }, () => {
  it("MLA/DSA and DeltaNet models quantize, pack and evaluate; moeq eval reproduces a run's KLD", async () => {
    const runs = new Map<string, Run>();
    // one at a time: the stage processes of one run already fill two cores
    for (const a of HARD) runs.set(a, await quantize(a));
    for (const a of HARD) {
      const run = runs.get(a);
      expect(run?.status, a).toBe("completed");
      expect(run?.model.arch).toBe(a);
      const k = run?.kld.kld.mean ?? Number.NaN;
      // 4-bit RTN of random tiny models: a real but bounded loss
      expect(k, a).toBeGreaterThan(1e-4);
      expect(k, a).toBeLessThan(0.5);
    }
    const e = await moeq([
      "eval",
      join(tinyRandom, "deepseek_v32"),
      join(work, "deepseek_v32"),
      "--texts",
      "random:2x32",
      "--json",
    ]);
    expect(e.code, e.stderr.slice(-2000)).toBe(0);
    const stats = JSON.parse(e.stdout) as { kld?: { kld?: { mean: number } }; mean?: number };
    const mean = stats.kld?.kld?.mean ?? stats.kld?.mean ?? Number.NaN;
    expect(mean).toBeCloseTo(runs.get("deepseek_v32")?.kld.kld.mean ?? Number.NaN, 6);
  });
});

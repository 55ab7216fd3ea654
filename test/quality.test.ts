// The quality bar on the trained model: W4 g32 symmetric, experts only, evaluated on
// 64 held-out Brown windows × 256 tokens. RTN must land in [0.040, 0.058] (PyTorch reference
// 0.0487); routed GPTQ must be ≥ 10 % lower; `moeq eval` must reproduce the run's numbers.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { meanKld, moeq, tempDir, trainedModel } from "./helpers.ts";

describe("quality on the trained tiny Qwen3-MoE", () => {
  const dir = tempDir("quality");
  let rtn = Number.NaN;

  it("RTN W4 g32 sym: mean KLD in [0.040, 0.058]", async () => {
    const r = await moeq(
      ["quantize", trainedModel, "--out", join(dir, "rtn"), "--algo", "rtn", "--group-size", "32", "--json"],
      1_800_000,
    );
    expect(r.code, r.stderr).toBe(0);
    rtn = meanKld(r.stdout);
    expect(rtn).toBeGreaterThanOrEqual(0.04);
    expect(rtn).toBeLessThanOrEqual(0.058);
    expect(existsSync(join(dir, "rtn.moeq-work", "report", "report.html"))).toBe(true);
  }, 1_800_000);

  it("routed GPTQ (16×256 calibration tokens) is at least 10 % below RTN, and moeq eval reproduces it", async () => {
    const out = join(dir, "gptq");
    const r = await moeq(
      [
        "quantize",
        trainedModel,
        "--out",
        out,
        "--algo",
        "gptq",
        "--group-size",
        "32",
        "--calib",
        "brown:16x256",
        "--policy",
        "routed",
        "--json",
      ],
      1_800_000,
    );
    expect(r.code, r.stderr).toBe(0);
    const gptq = meanKld(r.stdout);
    expect(Number.isFinite(rtn)).toBe(true);
    expect(gptq).toBeLessThanOrEqual(0.9 * rtn);
    const e = await moeq(["eval", trainedModel, out, "--json"], 1_800_000);
    expect(e.code, e.stderr).toBe(0);
    const again = (JSON.parse(e.stdout) as { kld: { kld: { mean: number } } }).kld.kld.mean;
    expect(Math.abs(again - gptq)).toBeLessThan(1e-9);
  }, 3_600_000);
});

// End to end on Phi-MoE (sparsemixer routing, LayerNorm with bias — the mid architecture stored
// per expert on disk): `moeq quantize` (RTN W4 g32 over every quantizable linear; the run ends
// with its own evaluation of the packed checkpoint) and `moeq eval` of the written checkpoint,
// which must reproduce the run's KLD. Real launcher, stage processes, embedded nats-server.
// GPTQ with calibration on all five: libs/models/bench/hard-e2e.sh <model_type...>.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { moeq, tinyRandom } from "./fixtures.ts";

const work = mkdtempSync(join(tmpdir(), "moeq-mid-e2e-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const meanKld = (json: string): number => {
  const j = JSON.parse(json) as { kld: { kld?: { mean: number }; mean?: number } };
  return j.kld.kld?.mean ?? (j.kld.mean as number);
};

describe("mid architectures end to end", () => {
  it("phimoe: moeq quantize completes and moeq eval reproduces its KLD", { timeout: 240_000 }, async () => {
    const out = join(work, "phimoe");
    const q = await moeq([
      "quantize",
      join(tinyRandom, "phimoe"),
      "--out",
      out,
      "--algo",
      "rtn",
      "--targets",
      "all-linear",
      "--eval",
      "random:2x32",
      "--threads",
      "1",
      "--json",
    ]);
    expect(q.code, q.stderr.slice(-2000)).toBe(0);
    const run = JSON.parse(q.stdout) as { status: string };
    expect(run.status).toBe("completed");
    const k = meanKld(q.stdout);
    // 4-bit weights must move the output distribution, but not destroy it
    expect(k).toBeGreaterThan(1e-4);
    expect(k).toBeLessThan(0.5);
    const e = await moeq(["eval", join(tinyRandom, "phimoe"), out, "--texts", "random:2x32", "--json"]);
    expect(e.code, e.stderr.slice(-2000)).toBe(0);
    expect(meanKld(e.stdout)).toBeCloseTo(k, 6);
  });
});

// `moeq study` on a tiny grid (synthesized model, small windows): the table has a row per policy
// and the three numbers per calibration size, everything finite, coverage present, and the
// study's numbers agree with direct single-policy `moeq quantize` runs of the same settings
// (the study collects every policy in one forward pass, the pipeline one policy per run).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { meanKld, moeq, shardHashes, shared, tempDir } from "./helpers.ts";

const dir = tempDir("study");
const model = join(dir, "model");
const calib = "random:4x32";
const evalText = "random:2x32";

interface Cell {
  policy: string;
  calib: string;
  calibTokens: number;
  kld: { mean: number; uncertainty: number; p99: number; max: number };
  sameTop: number;
  coverage: { experts: number; uncalibrated: number; unrouted: number; minEss: number; layers: number } | null;
  rtnFallbacks: number;
  statistics: { seconds: number; rows: number } | null;
}

let cells: Cell[] = [];
let table = "";

beforeAll(async () => {
  const s = await moeq([
    "synth",
    "--arch",
    "qwen3_moe",
    "--preset",
    "tiny",
    "--layers",
    "1",
    "--seed",
    "5",
    "--out",
    model,
  ]);
  expect(s.code, s.stderr).toBe(0);
  const out = join(dir, "out");
  const r = await moeq([
    "study",
    model,
    "--policies",
    "rtn,routed,soft,default",
    "--calib-sizes",
    "2x32,4x32",
    "--calib",
    "random",
    "--eval",
    evalText,
    "--out",
    out,
    "--work-dir",
    join(dir, "scored"),
    "--keep-checkpoints",
  ]);
  expect(r.code, r.stderr).toBe(0);
  cells = (JSON.parse(readFileSync(join(out, "study.json"), "utf8")) as { cells: Cell[] }).cells;
  table = readFileSync(join(out, "study.md"), "utf8");
  expect(r.stdout).toContain(table.trim().split("\n")[0]);
}, 600_000);

describe("moeq study (tiny grid)", () => {
  it("has one cell per policy and size (rtn once), with finite statistics and coverage", () => {
    expect(cells.map((c) => `${c.policy}@${c.calib}`)).toEqual([
      "rtn@-",
      "routed@2x32",
      "soft@2x32",
      "topup@2x32",
      "routed@4x32",
      "soft@4x32",
      "topup@4x32",
    ]);
    for (const c of cells) {
      for (const v of [c.kld.mean, c.kld.uncertainty, c.kld.p99, c.kld.max, c.sameTop])
        expect(Number.isFinite(v)).toBe(true);
      expect(c.kld.mean).toBeGreaterThan(0);
      expect(c.kld.p99).toBeGreaterThanOrEqual(0);
      expect(c.kld.max).toBeGreaterThanOrEqual(c.kld.p99);
      expect(c.sameTop).toBeGreaterThan(0);
      expect(c.sameTop).toBeLessThanOrEqual(1);
      if (c.policy === "rtn") expect(c.coverage).toBeNull();
      else {
        expect(c.calibTokens).toBe(c.calib === "2x32" ? 64 : 128);
        expect(c.coverage!.layers).toBe(1);
        expect(c.coverage!.experts).toBe(32);
        // soft feeds every token to every expert; routed only the routed ones
        if (c.policy !== "routed") expect([c.coverage!.uncalibrated, c.rtnFallbacks]).toEqual([0, 0]);
        else expect(c.rtnFallbacks).toBe(3 * c.coverage!.uncalibrated);
      }
    }
    // statistics cost: soft uses every row for every expert; the default at most twice routed's rows
    for (const z of ["2x32", "4x32"]) {
      const at = (p: string) => cells.find((c) => c.policy === p && c.calib === z)!;
      expect(at("soft").statistics!.rows).toBe(32 * at("soft").calibTokens);
      expect(at("topup").statistics!.rows).toBeGreaterThan(at("routed").statistics!.rows);
      expect(at("topup").statistics!.rows).toBeLessThanOrEqual(2 * at("routed").statistics!.rows);
    }
  });

  it("prints one table: a row per policy with mean ± u, p99, same-top per size, then the coverage", () => {
    const lines = table.split("\n");
    expect(lines).toContain("| policy | 2x32: mean KLD | p99 | same-top | 4x32: mean KLD | p99 | same-top |");
    for (const p of ["rtn", "routed", "soft", "topup"]) {
      const row = lines.find((l) => l.startsWith(`| ${p} |`))!;
      expect(row.split("|").length - 2).toBe(7);
      expect(row).toMatch(/\d\.\d{5} ± \d\.\d{5}/);
    }
    expect(table).toMatch(/\| routed \| \d+\/32 → RTN/);
  });

  it("agrees with direct single-policy moeq quantize runs (routed, and the default without --policy, at 4x32): same shards, same KLD", async () => {
    for (const policy of ["routed", "topup"]) {
      const r = await moeq([
        "quantize",
        model,
        "--out",
        join(dir, `q-${policy}`),
        ...(policy === "topup" ? [] : ["--policy", policy]),
        "--calib",
        calib,
        "--eval",
        evalText,
        "--quantizers",
        "1",
        "--json",
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(shardHashes(join(dir, "scored", `4x32-${policy}`)), policy).toEqual(shardHashes(join(dir, `q-${policy}`)));
      const direct = meanKld(r.stdout);
      const study = cells.find((c) => c.policy === policy && c.calib === "4x32")!.kld.mean;
      expect(Math.abs(study - direct) / direct, `${policy}: study ${study} vs quantize ${direct}`).toBeLessThan(1e-9);
    }
  }, 600_000);

  it("on Llama 4 (fused [gate|up] experts, router score scaling the expert input) gives the shards of moeq quantize", async () => {
    const fixture = join(shared, "fixtures", "tiny-random", "llama4_text");
    const r = await moeq([
      "study",
      fixture,
      "--policies",
      "soft",
      "--calib-sizes",
      "4x32",
      "--calib",
      "random",
      "--eval",
      evalText,
      "--work-dir",
      join(dir, "l4-scored"),
      "--keep-checkpoints",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const q = await moeq([
      "quantize",
      fixture,
      "--out",
      join(dir, "l4-q"),
      "--policy",
      "soft",
      "--calib",
      calib,
      "--eval",
      evalText,
      "--quantizers",
      "1",
      "--json",
    ]);
    expect(q.code, q.stderr).toBe(0);
    expect(shardHashes(join(dir, "l4-scored", "4x32-soft"))).toEqual(shardHashes(join(dir, "l4-q")));
  }, 600_000);
});

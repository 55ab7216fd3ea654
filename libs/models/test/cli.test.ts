// `moeq inspect` and `moeq forward` as a user runs them: the root launcher in a child process.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSafetensors } from "@moeq/safetensors";
import { afterAll, describe, expect, it, vi } from "vitest";
import { argmaxMismatches, maxRelErr, repoRoot, tinyRandom } from "./fixtures.ts";

// each spawn starts Node and loads the addon: seconds on a busy 2-core CI machine
vi.setConfig({ testTimeout: 60_000 });

const moeq = (...args: string[]) => spawnSync(join(repoRoot, "moeq"), args, { encoding: "utf8", timeout: 60_000 });
const tmp = mkdtempSync(join(tmpdir(), "moeq-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const report = JSON.parse(readFileSync(join(tinyRandom, "report.json"), "utf8")) as Record<string, { params: number }>;

describe("moeq inspect", () => {
  for (const arch of ["mixtral", "qwen2_moe"])
    it(`${arch} --json: layers, experts, top-k and the parameter count PyTorch reports`, () => {
      const r = moeq("inspect", join(tinyRandom, arch), "--json");
      expect(r.status, r.stderr).toBe(0);
      const s = JSON.parse(r.stdout);
      const cfg = JSON.parse(readFileSync(join(tinyRandom, arch, "config.json"), "utf8"));
      expect(s.modelType).toBe(arch);
      expect(s.numLayers).toBe(cfg.num_hidden_layers);
      expect(s.moeLayers).toEqual([0, 1, 2]);
      expect(s.experts).toBe(cfg.num_local_experts ?? cfg.num_experts);
      expect(s.topK).toBe(cfg.num_experts_per_tok);
      expect(s.parameters.model).toBe(report[arch].params);
      expect(s.bytesByDtype.BF16).toBe(2 * s.parameters.checkpoint);
      expect(s.quantizable.names).not.toContain("lm_head.weight");
    });

  it("prints a readable summary", () => {
    const r = moeq("inspect", join(tinyRandom, "glm4_moe"));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/architecture glm4_moe \(easy\)/);
    expect(r.stdout).toMatch(/MoE: 1,2; dense: 0/);
    expect(r.stdout).toMatch(/routing sigmoid_bias, shared expert yes/);
  });

  it("an unsupported architecture fails with the supported list and the guide", () => {
    const dir = join(tmp, "unknown-arch");
    mkdirSync(dir);
    const cfg = JSON.parse(readFileSync(join(tinyRandom, "mixtral", "config.json"), "utf8"));
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({ ...cfg, model_type: "not_a_moe", architectures: ["NotAMoe"] }),
    );
    const r = moeq("inspect", dir);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/model_type 'not_a_moe' is not a supported architecture/);
    expect(r.stderr).toMatch(/qwen3_moe/);
    expect(r.stderr).toMatch(/docs\/architectures\.md/);
  });
});

describe("moeq forward", () => {
  it("writes logits, hidden states and router logits that match the golden", () => {
    const dir = join(tinyRandom, "mixtral");
    const out = join(tmp, "mixtral.safetensors");
    const r = moeq(
      "forward",
      dir,
      "--input-ids",
      join(dir, "golden.safetensors"),
      "--out",
      out,
      "--hidden-states",
      "--router-logits",
    );
    expect(r.status, r.stderr).toBe(0);
    const got = openSafetensors(out);
    const golden = openSafetensors(join(dir, "golden.safetensors"));
    try {
      expect(got.names().sort()).toEqual(
        golden
          .names()
          .filter((n) => n !== "input_ids")
          .sort(),
      );
      for (const n of got.names()) {
        expect(got.entry(n).shape, n).toEqual(golden.entry(n).shape);
        expect(got.entry(n).dtype).toBe("F32");
        expect(maxRelErr(got.f32(n), golden.f32(n)), n).toBeLessThanOrEqual(1e-4);
      }
    } finally {
      got.close();
      golden.close();
    }
  });

  it("reads token ids from JSON (one sequence of the golden batch)", () => {
    const dir = join(tinyRandom, "olmoe");
    const golden = openSafetensors(join(dir, "golden.safetensors"));
    try {
      const ids = Array.from(new BigInt64Array(golden.tensor("input_ids").data.slice().buffer), Number);
      const T = golden.entry("input_ids").shape[1];
      const idsFile = join(tmp, "ids.json");
      writeFileSync(idsFile, JSON.stringify([ids.slice(T)]));
      const out = join(tmp, "olmoe.safetensors");
      const r = moeq("forward", dir, "--input-ids", idsFile, "--out", out);
      expect(r.status, r.stderr).toBe(0);
      const got = openSafetensors(out);
      try {
        expect(got.names()).toEqual(["logits"]);
        const V = got.entry("logits").shape[2];
        expect(got.entry("logits").shape).toEqual([1, T, V]);
        const want = golden.f32("logits").subarray(T * V);
        expect(maxRelErr(got.f32("logits"), want)).toBeLessThanOrEqual(1e-4);
        expect(argmaxMismatches(got.f32("logits"), want, V)).toEqual([]);
      } finally {
        got.close();
      }
    } finally {
      golden.close();
    }
  });

  it("rejects out-of-vocabulary and ragged ids without writing the output", () => {
    const dir = join(tinyRandom, "qwen3_moe");
    const out = join(tmp, "bad.safetensors");
    writeFileSync(join(tmp, "oov.json"), JSON.stringify([[1, 2, 100000]]));
    let r = moeq("forward", dir, "--input-ids", join(tmp, "oov.json"), "--out", out);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/token id 100000 at position 2 is outside the vocabulary \[0, 257\)/);
    writeFileSync(join(tmp, "ragged.json"), JSON.stringify([[1, 2, 3], [4]]));
    r = moeq("forward", dir, "--input-ids", join(tmp, "ragged.json"), "--out", out);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/ragged\.json: sequence 1 has 1 tokens, sequence 0 has 3/);
    expect(existsSync(out)).toBe(false);
  });
});

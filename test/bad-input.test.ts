// Bad input fails before any work: a clear message naming the path/field, exit status ≠ 0, and
// neither the output dir nor the work dir is left behind.
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolveOptions } from "@moeq/runtime";
import { describe, expect, it } from "vitest";
import { preflight } from "../libs/cli/src/supervisor/validate.ts";
import { moeq, shared, tempDir, trainedModel } from "./helpers.ts";

const dir = tempDir("bad");

function copyModel(name: string): string {
  const d = join(dir, name);
  mkdirSync(d);
  for (const f of [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
  ])
    copyFileSync(join(trainedModel, f), join(d, f));
  return d;
}

async function expectRejected(args: string[], out: string, message: RegExp) {
  const r = await moeq(["quantize", ...args, "--out", out]);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(message);
  expect(existsSync(out)).toBe(false);
  expect(existsSync(`${out}.moeq-work`)).toBe(false);
}

describe("moeq quantize rejects bad input before work starts", () => {
  it("wrong model path", async () => {
    await expectRejected([join(dir, "nope")], join(dir, "o1"), /nope does not exist/);
  }, 60_000);

  it("unknown architecture", async () => {
    const m = copyModel("unknown-arch");
    const cfg = JSON.parse(readFileSync(join(m, "config.json"), "utf8"));
    writeFileSync(
      join(m, "config.json"),
      JSON.stringify({ ...cfg, model_type: "nonexistent_moe", architectures: ["NonexistentForCausalLM"] }),
    );
    await expectRejected([m], join(dir, "o2"), /nonexistent_moe/);
  }, 60_000);

  it("corrupt shard", async () => {
    const m = copyModel("corrupt");
    truncateSync(join(m, "model.safetensors"), Math.floor(statSync(join(m, "model.safetensors")).size / 2));
    await expectRejected([m], join(dir, "o3"), /model\.safetensors/);
  }, 60_000);

  it("invalid options", async () => {
    await expectRejected([trainedModel, "--bits", "3"], join(dir, "o4"), /bits/);
    await expectRejected([trainedModel, "--group-size", "0"], join(dir, "o5"), /groupSize|group size/);
    await expectRejected([trainedModel, "--group-size", "48"], join(dir, "o6"), /not a multiple of group size 48/);
    // float schemes need their own block multiple, not the int group size: MXFP4's 32-element
    // blocks refuse DeepSeek-V3's 48-column q_b_proj (FP8's 128×128 blocks may be partial: below)
    await expectRejected(
      [
        join(shared, "fixtures", "tiny-random", "deepseek_v3"),
        "--scheme",
        "mxfp4",
        "--targets",
        "all-linear",
        "--calib",
        "random:2x16",
        "--eval",
        "random:2x16",
      ],
      join(dir, "o6b"),
      /q_b_proj\.weight has 48 input columns, not a multiple of 32 \(MXFP4 blocks\)/,
    );
    await expectRejected([trainedModel, "--calib", "nonsense"], join(dir, "o7"), /calib/);
    await expectRejected(
      [trainedModel, "--calib", join(dir, "missing.txt")],
      join(dir, "o8"),
      /missing\.txt does not exist/,
    );
  }, 120_000);

  it("unwritable output", async () => {
    const file = join(dir, "a-file");
    writeFileSync(file, "");
    await expectRejected([trainedModel], join(file, "out"), /a-file/);
    const existing = join(dir, "existing");
    mkdirSync(existing);
    writeFileSync(join(existing, "x"), "");
    const r = await moeq(["quantize", trainedModel, "--out", existing]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/already exists/);
    expect(existsSync(`${existing}.moeq-work`)).toBe(false);
  }, 60_000);
});

describe("the column check follows the scheme", () => {
  const deepseek = join(shared, "fixtures", "tiny-random", "deepseek_v3");
  const check = (scheme: string) =>
    preflight(
      deepseek,
      join(dir, `pf-${scheme}`),
      undefined,
      resolveOptions({
        scheme,
        targets: "all-linear",
        ...(scheme === "w4a16" ? { groupSize: 32 } : {}),
        calib: "random:2x16",
        eval: "random:2x16",
      }),
    );

  it("FP8 block scales cover partial 128×128 blocks, so a 48-column weight is fine; NVFP4 needs 16, MXFP4 32", () => {
    expect(check("fp8-block").targets).toBeGreaterThan(0);
    expect(check("nvfp4").targets).toBeGreaterThan(0); // every width there is a multiple of 16
    expect(() => check("mxfp4")).toThrow(/not a multiple of 32 \(MXFP4 blocks\)/);
    expect(() => check("w4a16")).toThrow(/not a multiple of group size 32/);
  });
});

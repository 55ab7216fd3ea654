// Bad input and contradictory options found before any work (issue: faults round two): each case
// failed on the previous code mid-run, silently, or by exhausting memory. createRun is what
// `moeq quantize` runs before it writes anything: it must throw, naming the field, and leave
// neither the output nor the work dir.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createRun } from "../libs/cli/src/commands/quantize.ts";
import { moeq, shared, tempDir, trainedModel } from "./helpers.ts";

const dir = tempDir("refused");
const fixture = (arch: string) => join(shared, "fixtures", "tiny-random", arch);
let n = 0;

/** A copy of `src` (config + weights) with `edit` applied to its config. */
function withConfig(src: string, edit: (c: Record<string, unknown>) => void): string {
  const d = join(dir, `model-${n++}`);
  mkdirSync(d);
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
    if (existsSync(join(src, f))) copyFileSync(join(src, f), join(d, f));
  const c = JSON.parse(readFileSync(join(d, "config.json"), "utf8"));
  edit(c);
  writeFileSync(join(d, "config.json"), JSON.stringify(c));
  return d;
}

async function refused(model: string, options: Record<string, unknown>, message: RegExp, extra = {}) {
  const out = join(dir, `out-${n++}`);
  await expect(createRun({ modelDir: model, out, options, ...extra })).rejects.toThrow(message);
  expect(existsSync(out)).toBe(false);
  expect(existsSync(`${out}.moeq-work`)).toBe(false);
}

function file(name: string, content: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

describe("refused before any work", () => {
  it("a few bytes of config cannot exhaust memory: absurd layer / expert counts name the field (inspect and quantize)", async () => {
    const layers = withConfig(fixture("qwen3_moe"), (c) => {
      c.num_hidden_layers = 1e9;
    });
    const experts = withConfig(fixture("qwen3_moe"), (c) => {
      c.num_experts = 1e9;
    });
    const a = await moeq(["inspect", layers], 60_000);
    expect(a.code).not.toBe(0);
    expect(a.stderr).toMatch(/'num_hidden_layers' must be at most 4096/);
    await refused(experts, { calib: "random:2x16", eval: "random:2x16" }, /'num_experts' must be at most 65536/);
  }, 60_000);

  it("routing no forward pass could run: top-k above the experts, n_group not dividing them, topk_group above n_group", async () => {
    const o = { calib: "random:2x16", eval: "random:2x16" };
    const ds = fixture("deepseek_v3");
    const cases: [(c: Record<string, unknown>) => void, RegExp][] = [
      [(c) => void (c.num_experts_per_tok = 9), /top-k 9 \(num_experts_per_tok\) exceeds the 8 experts/],
      [(c) => void (c.n_group = 3), /n_group 3 does not divide the 8 experts/],
      [(c) => void (c.topk_group = 3), /topk_group 3 exceeds n_group 2/],
      [(c) => void (c.num_experts_per_tok = 5), /top-k 5 exceeds the 4 experts of the topk_group 1 groups kept/],
    ];
    for (const [edit, message] of cases) await refused(withConfig(ds, edit), o, message);
  }, 60_000);

  it("calibration and evaluation text that cannot make the windows: empty, binary, too short, no tokenizer, random:0xT", async () => {
    const empty = file("empty.txt", "");
    const binary = file("binary.txt", Buffer.from([0x89, 0x50, 0x4e, 0x47, 0xff, 0xfe, 0x00, 0x01, 0xc3, 0x28]));
    const nul = file("nul.jsonl", `{"text": "a\\u0000b"}\n`);
    const short = file("short.txt", "A short text.");
    await refused(trainedModel, { calib: empty }, /--calib: .*empty\.txt: file has no text/);
    await refused(trainedModel, { calib: binary }, /binary\.txt: not UTF-8 text/);
    await refused(trainedModel, { calib: `${short}:4x256` }, /short\.txt tokenizes to \d+ tokens, fewer than the 1024/);
    // found only after packing before: the evaluation text
    await refused(trainedModel, { eval: empty }, /--eval: .*empty\.txt: file has no text/);
    await refused(trainedModel, { eval: nul }, /--eval: .*nul\.jsonl/);
    await refused(fixture("qwen3_moe"), { calib: short, eval: "random:2x16" }, /tokenizer\.json does not exist/);
    await refused(trainedModel, { calib: "random:0x32" }, /need N ≥ 1/);
  }, 60_000);

  it("a config.json linked to a non-JSON file is refused without echoing the file's content", async () => {
    const m = withConfig(fixture("qwen3_moe"), () => {});
    const secret = file("secret.txt", "root:secret-token-4711:0:0:\n");
    rmSync(join(m, "config.json"));
    symlinkSync(secret, join(m, "config.json"));
    const out = join(dir, `out-${n++}`);
    const err = await createRun({ modelDir: m, out, options: {} }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/config\.json: not valid JSON \(\d+ characters; content not shown\)/);
    expect(err?.message).not.toContain("secret-token");
    expect(existsSync(out)).toBe(false);
  }, 30_000);

  it("an unreachable --nats fails before the run is created", async () => {
    await refused(trainedModel, {}, /--nats nats:\/\/127\.0\.0\.1:1: cannot connect/, { nats: "nats://127.0.0.1:1" });
  }, 60_000);

  it("contradictory options are errors, not silently overridden", async () => {
    await refused(trainedModel, { scheme: "w4a16", bits: 8 }, /--bits 8 contradicts --scheme w4a16/);
    await refused(trainedModel, { scheme: "nvfp4", groupSize: 32 }, /--group-size does not apply to scheme nvfp4/);
    await refused(trainedModel, { scheme: "fp8-block", bits: 4 }, /--bits does not apply to scheme fp8-block/);
    // the scheme's own bits may be repeated
    const ok = join(dir, "w8-ok");
    const work = await createRun({ modelDir: trainedModel, out: ok, options: { scheme: "w8a16", bits: 8 } });
    expect(JSON.parse(readFileSync(join(work, "run.json"), "utf8")).options.bits).toBe(8);
  }, 60_000);

  it("--work-dir equal to, inside or around --out, and --out inside the model dir, are refused", async () => {
    const out = join(dir, "same");
    for (const workDir of [out, join(out, "work")]) {
      await expect(createRun({ modelDir: trainedModel, out, workDir, options: {} })).rejects.toThrow(
        /must be separate directories/,
      );
      expect(existsSync(out)).toBe(false);
    }
    const outer = join(dir, "outer");
    mkdirSync(outer);
    await expect(
      createRun({ modelDir: trainedModel, out: join(outer, "out"), workDir: outer, options: {} }),
    ).rejects.toThrow(/must be separate directories/);
    const model = withConfig(fixture("qwen3_moe"), () => {});
    await expect(
      createRun({
        modelDir: model,
        out: join(model, "quantized"),
        options: { calib: "random:2x16", eval: "random:2x16" },
      }),
    ).rejects.toThrow(/inside the model directory/);
    expect(existsSync(join(model, "quantized"))).toBe(false);
  }, 60_000);
});

describe("found at first use, named", () => {
  it("a NaN weight fails the run with a message naming the tensor and element (was an internal schema error on a statistic)", async () => {
    const m = withConfig(fixture("qwen3_moe"), () => {});
    const file = join(m, "model.safetensors");
    const bytes = readFileSync(file);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString("utf8"));
    const name = "model.layers.0.mlp.experts.1.up_proj.weight";
    const { dtype, shape, data_offsets } = header[name] as { dtype: string; shape: number[]; data_offsets: number[] };
    expect(dtype).toBe("BF16");
    // row 2, column 3 becomes a bf16 NaN
    bytes.writeUInt16LE(0x7fc0, 8 + headerLen + data_offsets[0] + 2 * (2 * shape[1] + 3));
    writeFileSync(file, bytes);
    const r = await moeq([
      "quantize",
      m,
      "--out",
      join(dir, "nan-out"),
      "--calib",
      "random:4x16",
      "--eval",
      "random:2x16",
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toContain(`tensor '${name}' holds NaN at row 2, column 3`);
    expect(r.stdout + r.stderr).not.toMatch(/Expected a finite number/);
  }, 120_000);
});

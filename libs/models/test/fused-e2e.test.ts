// End to end on the fused / stacked expert layouts (GPT-OSS interleaved gate_up + biases, Llama 4
// [gate|up] halves, DBRX row-stacked w1/v1/w2 and its Wqkv row slices): `moeq quantize` (RTN W4 g16 over every quantizable linear, with --propagate
// quantized so the calibrator re-fuses dequantized experts on a tiny calibration set) and
// `moeq eval` of the written checkpoint, which must reproduce the run's KLD. Also `moeq eval` of a
// GPT-OSS checkpoint stored MXFP4 the way OpenAI ships it (per-expert modules re-fused into the
// model's gate_up_proj / down_proj) — and the GPT-OSS quantize run starts from that MXFP4 checkpoint,
// the form OpenAI ships, so a quantized input is proven decoded (not re-quantized from its blocks,
// and no *_blocks / *_scales remnant in the output). Real launcher, stage processes, embedded
// nats-server.
// GPTQ with calibration on these and the hard architectures: libs/models/bench/hard-e2e.sh.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type QuantizedModule, writeQuantizedCheckpoint } from "@moeq/formats";
import { quantizeMxfp4 } from "@moeq/quant";
import { bf16BitsToF32, type Tensor } from "@moeq/tensor";
import { afterAll, describe, expect, it } from "vitest";
import { extractRoleMatrix, packTarget } from "../src/blocks/fused-tensors.ts";
import { loadModel } from "../src/model.ts";
import { weightRoles } from "../src/tensors.ts";
import { moeq, tinyRandom } from "./fixtures.ts";

const work = mkdtempSync(join(tmpdir(), "moeq-fused-e2e-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface EvalJson {
  kld: { kld?: { mean: number }; mean?: number };
  expertWeightErrors?: { layer: number; expert: number; relError: number }[];
}
const meanKld = (j: EvalJson): number => j.kld.kld?.mean ?? (j.kld.mean as number);

/** GPT-OSS with its experts MXFP4 (biases bf16), written by the gpt-oss-mxfp4 format writer. */
function writeMxfp4GptOss(dir: string): void {
  const fixture = join(tinyRandom, "gpt_oss");
  const m = loadModel(fixture);
  try {
    const roles = weightRoles(m.spec).filter((r) => r.module === "experts");
    const replaced = new Set<string>();
    const bf = (n: string) => new Uint16Array(m.checkpoint.tensor(n).data.slice().buffer);
    const modules: QuantizedModule[] = roles.map((r) => {
      const w = Float32Array.from(
        extractRoleMatrix(r, bf(r.tensor), m.checkpoint.tensor(r.tensor).shape),
        bf16BitsToF32,
      );
      const layout = (m.spec.layers[r.layer].mlp as { experts: { layout: { gateUpBias: string; downBias: string } } })
        .experts.layout;
      const [I, H] = r.projection === "down_proj" ? [r.shape[1], r.shape[0]] : [r.shape[0], r.shape[1]];
      const e = r.expert as number;
      for (const n of [r.tensor, layout.gateUpBias, layout.downBias]) replaced.add(n);
      // gate_up_proj_bias interleaves gate (even) and up (odd) entries like the weight rows
      const b =
        r.projection === "down_proj"
          ? bf(layout.downBias).slice(e * H, (e + 1) * H)
          : bf(layout.gateUpBias)
              .subarray(e * 2 * I, (e + 1) * 2 * I)
              .filter((_, i) => i % 2 === (r.projection === "gate_proj" ? 0 : 1));
      const bias: Tensor = {
        dtype: "BF16",
        shape: [b.length],
        data: new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
      };
      return {
        name: packTarget(m.spec, r).module,
        weight: quantizeMxfp4(w, r.shape[0], r.shape[1], { name: r.tensor }),
        bias,
      };
    });
    const passthrough = new Map<string, Tensor>();
    for (const n of m.checkpoint.names()) if (!replaced.has(n)) passthrough.set(n, m.checkpoint.tensor(n));
    const config = JSON.parse(readFileSync(join(fixture, "config.json"), "utf8")) as Record<string, unknown>;
    writeQuantizedCheckpoint(
      dir,
      "gpt-oss-mxfp4",
      { modules, passthrough, modelConfig: config },
      { sourceDir: fixture },
    );
  } finally {
    m.close();
  }
}

// granitemoe's input_linear/output_linear experts are held to transformers' KLD in
// test/reference-quality.test.ts; DBRX stays here for its Wqkv row slices under all-linear.
const FUSED = ["gpt_oss", "llama4_text", "dbrx"];
const mxfp4GptOss = join(work, "gpt_oss-mxfp4");
/** Llama 4's fused [gate|up] experts go out NVFP4 (per-expert modules with static input scales):
 *  float schemes on fused layouts; the other three stay W4 int. */
const SCHEME: Record<string, string[]> = { llama4_text: ["--scheme", "nvfp4"] };
/** Where each fused run starts: GPT-OSS from its MXFP4-stored form, the others from the fixture. */
const inputOf = (a: string) => (a === "gpt_oss" ? mxfp4GptOss : join(tinyRandom, a));

describe("fused expert layouts end to end", () => {
  it("moeq quantize (RTN, --propagate quantized) completes on each fused layout and moeq eval reproduces its KLD", {
    timeout: 900_000,
  }, async () => {
    writeMxfp4GptOss(mxfp4GptOss);
    // concurrently: each run is mostly process start-up and waiting on the bus
    const results = await Promise.all(
      FUSED.map(async (a) => {
        const out = join(work, a);
        const q = await moeq([
          "quantize",
          inputOf(a),
          "--out",
          out,
          "--algo",
          "rtn",
          "--propagate",
          "quantized",
          // int schemes: group 16; a float scheme's blocks are its own (--group-size would be refused)
          ...(SCHEME[a] ?? ["--group-size", "16"]),
          "--targets",
          "all-linear",
          "--calib",
          "random:2x16",
          "--eval",
          "random:2x32",
          "--quantizers",
          "1",
          "--threads",
          "1",
          "--json",
        ]);
        if (q.code !== 0) return { a, error: `quantize exit ${q.code}: ${q.stderr.slice(-1500)}` };
        const e = await moeq(["eval", inputOf(a), out, "--texts", "random:2x32", "--json"]);
        if (e.code !== 0) return { a, error: `eval exit ${e.code}: ${e.stderr.slice(-1500)}` };
        return {
          a,
          run: JSON.parse(q.stdout) as EvalJson & { status: string },
          evaluation: JSON.parse(e.stdout) as EvalJson,
        };
      }),
    );
    for (const r of results) {
      expect(r.error, r.a).toBeUndefined();
      const run = r.run!;
      expect(run.status, r.a).toBe("completed");
      const k = meanKld(run);
      // a sanity bound only (quantized inputs, NVFP4, every linear: no reference number); the quality
      // evidence is test/reference-quality.test.ts
      expect(k, r.a).toBeGreaterThan(1e-4);
      expect(k, r.a).toBeLessThan(0.5);
      expect(meanKld(r.evaluation!), r.a).toBeCloseTo(k, 6);
      // per-expert weight errors are found for the per-expert modules cut out of fused tensors
      const errs = r.evaluation!.expertWeightErrors ?? [];
      expect(errs.length, r.a).toBeGreaterThan(0);
      for (const x of errs) expect(x.relError, `${r.a} ${x.layer}/${x.expert}`).toBeGreaterThan(0.01);
    }
    const gptOssOut = readFileSync(join(work, "gpt_oss", "model.safetensors"));
    const header = gptOssOut.subarray(8, 8 + Number(gptOssOut.readBigUInt64LE(0))).toString();
    expect(header).not.toMatch(/_blocks"|_scales"/);
  });

  it("moeq eval reads a GPT-OSS checkpoint stored MXFP4 (experts re-fused from its per-expert modules)", {
    timeout: 180_000,
  }, async () => {
    const dir = mxfp4GptOss;
    if (!existsSync(join(dir, "config.json"))) writeMxfp4GptOss(dir);
    const e = await moeq(["eval", join(tinyRandom, "gpt_oss"), dir, "--texts", "random:2x32", "--json"]);
    expect(e.code, e.stderr.slice(-2000)).toBe(0);
    const j = JSON.parse(e.stdout) as EvalJson & { format?: string };
    const k = meanKld(j);
    expect(k).toBeGreaterThan(1e-5);
    expect(k).toBeLessThan(0.5);
    // every expert of every layer has its MXFP4 weight error (e2m1 with a power-of-two scale: a few %)
    const errs = j.expertWeightErrors ?? [];
    expect(errs.length).toBe(3 * 8);
    for (const x of errs) {
      expect(x.relError).toBeGreaterThan(0.01);
      expect(x.relError).toBeLessThan(0.5);
    }
  });

  it("moeq quantize --device cuda on a build without CUDA (or a device that is not there) fails before any work", {
    timeout: 120_000,
  }, async () => {
    const out = join(work, "device-refused");
    const q = await moeq(["quantize", join(tinyRandom, "gpt_oss"), "--out", out, "--device", "cuda:99"]);
    expect(q.code).toBe(1);
    expect(q.stderr).toMatch(/option device: .*(has no CUDA kernels|cuda:99 is not available)/);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.moeq-work`)).toBe(false);
    const bad = await moeq(["quantize", join(tinyRandom, "gpt_oss"), "--out", out, "--device", "gpu"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--device: expected cpu, cuda or cuda:N .*"gpu"/);
    expect(existsSync(out)).toBe(false);
  });
});

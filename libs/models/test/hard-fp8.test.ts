// FP8 block-quantized inputs: a tiny FP8-block checkpoint written by moeq's own writer
// (@moeq/formats "fp8-block") from a fixture, opened with loadModel (which wraps the checkpoint in
// fp8BlockSource), gives the forward pass of the dequantized weights — dequantized here
// independently (e4m3 bits decoded by formula, × block scale, rounded to bf16 like transformers).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeQuantizedCheckpoint } from "@moeq/formats";
import {
  Engine,
  fp8BlockSource,
  loadModel,
  ModelWeightError,
  mapSource,
  quantizableWeights,
  tensorToF32,
} from "@moeq/models";
import { quantizeFp8 } from "@moeq/quant";
import { f32ToBf16Bits, fromF32, type Tensor } from "@moeq/tensor";
import { afterAll, describe, expect, it } from "vitest";
import { maxRelErr, tinyRandom } from "./fixtures.ts";

const BLOCK = [16, 16] as const;
const tmp: string[] = [];
afterAll(() => {
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});

/** e4m3fn by its definition: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7f/0xff NaN. */
function e4m3(code: number): number {
  const s = code & 0x80 ? -1 : 1;
  const e = (code >> 3) & 0xf;
  const m = code & 7;
  if (e === 15 && m === 7) return Number.NaN;
  return e === 0 ? s * (m / 8) * 2 ** -6 : s * (1 + m / 8) * 2 ** (e - 7);
}

function bf16Round(x: number): number {
  const b = new Uint32Array([f32ToBf16Bits(x) << 16]);
  return new Float32Array(b.buffer)[0];
}

/** Quantizes every quantizable weight of `fixture` to FP8 blocks and writes the checkpoint. */
function writeFp8(fixture: string) {
  const src = loadModel(join(tinyRandom, fixture));
  const roles = quantizableWeights(src.arch, src.spec);
  const q = new Set(roles.map((r) => r.tensor));
  const passthrough = new Map<string, Tensor>();
  for (const n of src.source.names()) if (!q.has(n)) passthrough.set(n, src.source.tensor(n));
  const modules = roles.map((r) => {
    const [rows, cols] = r.shape;
    return {
      name: r.tensor.slice(0, -".weight".length),
      weight: quantizeFp8(tensorToF32(src.source.tensor(r.tensor), r.tensor), rows, cols, {
        strategy: "block",
        block: BLOCK,
        name: r.tensor,
      }),
    };
  });
  const out = mkdtempSync(join(tmpdir(), `moeq-fp8-${fixture}-`));
  tmp.push(out);
  writeQuantizedCheckpoint(join(out, "model"), "fp8-block", { modules, passthrough, modelConfig: src.config });
  return { src, dir: join(out, "model"), roles, modules };
}

describe("FP8 block-quantized input checkpoints", { timeout: 60_000 }, () => {
  for (const fixture of ["deepseek_v3", "qwen3_next"])
    it(`${fixture}: forward of the FP8 checkpoint equals the forward of its dequantized weights`, async () => {
      const { src, dir, roles, modules } = writeFp8(fixture);
      const fp8 = loadModel(dir);
      try {
        // on disk: F8_E4M3 + weight_scale_inv; through the model: one BF16 logical weight
        const any = roles[0].tensor;
        expect(fp8.checkpoint.entry(any).dtype).toBe("F8_E4M3");
        expect(fp8.checkpoint.has(`${any.slice(0, -".weight".length)}.weight_scale_inv`)).toBe(true);
        expect(fp8.source.tensor(any).dtype).toBe("BF16");
        expect(fp8.source.names().some((n) => n.endsWith("weight_scale_inv"))).toBe(false);
        expect(quantizableWeights(fp8.arch, fp8.spec).map((r) => r.tensor)).toEqual(roles.map((r) => r.tensor));

        const deq = new Map<string, Tensor>();
        for (const m of modules) {
          const { rows, cols, codes, scales } = m.weight;
          const sc = Math.ceil(cols / BLOCK[1]);
          const w = new Float32Array(rows * cols);
          for (let r = 0; r < rows; r++)
            for (let c = 0; c < cols; c++)
              w[r * cols + c] = bf16Round(
                Math.fround(
                  e4m3(codes[r * cols + c]) * scales[Math.floor(r / BLOCK[0]) * sc + Math.floor(c / BLOCK[1])],
                ),
              );
          deq.set(`${m.name}.weight`, fromF32(w, "F32", [rows, cols]));
        }
        const ref = new Map<string, Tensor>();
        for (const n of src.source.names()) ref.set(n, deq.get(n) ?? src.source.tensor(n));
        const ids = Array.from({ length: 2 * 11 }, (_, i) => (i * 37 + 5) % src.spec.vocabSize);
        const got = await fp8.engine().forward(ids, 2, 11);
        const want = await new Engine(src.spec, mapSource(ref)).forward(ids, 2, 11);
        expect(maxRelErr(got.logits, want.logits)).toBeLessThan(1e-6);
        // and the FP8 rounding is visible against the original bf16 model
        const orig = await src.engine().forward(ids, 2, 11);
        expect(maxRelErr(orig.logits, want.logits)).toBeGreaterThan(1e-4);
      } finally {
        fp8.close();
        src.close();
      }
    });

  it("a scale tensor of the wrong size is a ModelWeightError naming it", () => {
    const codes: Tensor = { dtype: "F8_E4M3", shape: [20, 33], data: new Uint8Array(20 * 33).fill(0x38) };
    const scale = fromF32(new Float32Array(4), "F32", [2, 2]);
    const src = fp8BlockSource(
      mapSource(
        new Map([
          ["m.weight", codes],
          ["m.weight_scale_inv", scale],
        ]),
      ),
      { block: [16, 16] },
    );
    expect(() => src.tensor("m.weight").data).toThrow(ModelWeightError);
    expect(() => src.tensor("m.weight").data).toThrow(/m\.weight_scale_inv.*\[2, 3\]/);
    const ok = fp8BlockSource(
      mapSource(
        new Map([
          ["m.weight", codes],
          ["m.weight_scale_inv", fromF32(new Float32Array(6).fill(2), "F32", [2, 3])],
        ]),
      ),
      { block: [16, 16], dtype: "F32" },
    );
    // 0x38 = 1.0 in e4m3; × 2
    expect(tensorToF32(ok.tensor("m.weight"), "m.weight").every((v) => v === 2)).toBe(true);
    expect(() => ok.tensor("m.weight_scale_inv")).toThrow(ModelWeightError);
    expect(ok.names()).toEqual(["m.weight"]);
  });

  it("an FP8 weight without its scales is a ModelWeightError", () => {
    const codes: Tensor = { dtype: "F8_E4M3", shape: [2, 2], data: new Uint8Array(4) };
    const src = fp8BlockSource(mapSource(new Map([["m.weight", codes]])));
    expect(() => src.tensor("m.weight")).toThrow(/m\.weight_scale_inv/);
  });
});

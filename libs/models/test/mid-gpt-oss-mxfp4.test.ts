// GPT-OSS stored the way OpenAI ships it: experts as MXFP4 *_blocks / *_scales, written from the
// bf16 fixture by moeq's own gpt-oss-mxfp4 writer. The model loads, its experts decode to exactly
// the quantizer's dequantized weights (cross-checked against @moeq/formats' reader), and the
// forward equals the forward on the bf16 fixture with those dequantized experts swapped in.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type QuantizedModule, readQuantizedCheckpoint, writeQuantizedCheckpoint } from "@moeq/formats";
import { Engine, loadModel, overlaySource, type WeightRole, weightRoles } from "@moeq/models";
import { quantizeMxfp4 } from "@moeq/quant";
import { bf16BitsToF32, type Tensor } from "@moeq/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { extractRoleMatrix, packTarget, refuseModules } from "../src/blocks/fused-tensors.ts";
import { dequantizeMxfp4Transposed } from "../src/blocks/mxfp4-source.ts";
import { tinyRandom } from "./fixtures.ts";

const fixture = join(tinyRandom, "gpt_oss");
const u8 = (xs: number[], shape: number[]): Tensor => ({ dtype: "U8", shape, data: Uint8Array.from(xs) });

describe("MXFP4 decoding (formats.md §4 byte-level example)", () => {
  it("low nibble first, e2m1 × 2^(scale − 127), rows come back transposed as [E, cols, rows]", () => {
    // row 0: bytes 0x21 → 0.5, 1 (× 2^1); row 1: bytes 0x7f → −6, 6 (× 2^−1)
    const blocks = u8([...new Array(16).fill(0x21), ...new Array(16).fill(0x7f)], [1, 2, 1, 16]);
    const t = dequantizeMxfp4Transposed(blocks, u8([128, 126], [1, 2, 1]), "x.gate_up_proj");
    expect(t.shape).toEqual([1, 32, 2]);
    expect(t.dtype).toBe("BF16");
    const f = Float32Array.from(new Uint16Array(t.data.buffer, t.data.byteOffset, 64), bf16BitsToF32);
    // element (row r, col c) sits at [c, r]
    expect([f[0], f[1], f[2], f[3], f[4], f[5]]).toEqual([1, -3, 2, 3, 1, -3]);
  });

  it("a NaN scale byte or a wrong shape is a typed error naming the tensor", () => {
    const blocks = u8(new Array(16).fill(0), [1, 1, 1, 16]);
    expect(() => dequantizeMxfp4Transposed(blocks, u8([255], [1, 1, 1]), "m.down_proj")).toThrow(/m\.down_proj.*0xff/);
    expect(() => dequantizeMxfp4Transposed(blocks, u8([127, 127], [1, 2, 1]), "m.down_proj")).toThrow(
      /m\.down_proj.*scales must be U8 \[1, 1, 1\]/,
    );
  });
});

describe("GPT-OSS MXFP4 checkpoint made by moeq's writer", () => {
  let dir: string;
  /** quantizer output per role key "layer:expert:projection" */
  const quant = new Map<string, Float32Array>();
  let roles: WeightRole[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "moeq-gptoss-mxfp4-"));
    const m = loadModel(fixture);
    try {
      roles = weightRoles(m.spec).filter((r) => r.module === "experts");
      const fusedNames = new Set<string>();
      const modules: QuantizedModule[] = [];
      const bf = (n: string) => new Uint16Array(m.checkpoint.tensor(n).data.slice().buffer);
      for (const r of roles) {
        fusedNames.add(r.tensor);
        const t = m.checkpoint.tensor(r.tensor);
        const w = Float32Array.from(
          extractRoleMatrix(r, bf(r.tensor), t.shape),
          (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0],
        );
        const q = quantizeMxfp4(w, r.shape[0], r.shape[1], { name: r.tensor });
        quant.set(`${r.layer}:${r.expert}:${r.projection}`, q.dequant);
        const layout = (m.spec.layers[r.layer].mlp as { experts: { layout: { gateUpBias: string; downBias: string } } })
          .experts.layout;
        const I = r.projection === "down_proj" ? r.shape[1] : r.shape[0];
        const H = r.projection === "down_proj" ? r.shape[0] : r.shape[1];
        const e = r.expert as number;
        fusedNames.add(layout.gateUpBias);
        fusedNames.add(layout.downBias);
        // biases stay bf16, split per projection (gate at even, up at odd entries of gate_up_proj_bias)
        const gu = bf(layout.gateUpBias).subarray(e * 2 * I, (e + 1) * 2 * I);
        const b =
          r.projection === "down_proj"
            ? bf(layout.downBias).slice(e * H, (e + 1) * H)
            : gu.filter((_, i) => i % 2 === (r.projection === "gate_proj" ? 0 : 1));
        const bias: Tensor = {
          dtype: "BF16",
          shape: [b.length],
          data: new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
        };
        modules.push({ name: packTarget(m.spec, r).module, weight: q, bias });
      }
      const passthrough = new Map<string, Tensor>();
      for (const n of m.checkpoint.names()) if (!fusedNames.has(n)) passthrough.set(n, m.checkpoint.tensor(n));
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
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is stored as *_blocks / *_scales (no bf16 expert tensors) and loads as gpt_oss", () => {
    const m = loadModel(dir);
    try {
      const names = m.checkpoint.names();
      expect(names).toContain("model.layers.0.mlp.experts.gate_up_proj_blocks");
      expect(names).toContain("model.layers.2.mlp.experts.down_proj_scales");
      expect(names).not.toContain("model.layers.0.mlp.experts.gate_up_proj");
      expect(m.spec.modelType).toBe("gpt_oss");
      expect(m.source.tensor("model.layers.0.mlp.experts.gate_up_proj").shape).toEqual([8, 64, 64]);
    } finally {
      m.close();
    }
  });

  it("reads back to exactly the quantizer's dequantized expert weights (and agrees with @moeq/formats' reader)", () => {
    const m = loadModel(dir);
    const ck = readQuantizedCheckpoint(dir);
    try {
      expect(ck.format).toBe("gpt-oss-mxfp4");
      for (const r of roles) {
        const t = m.source.tensor(r.tensor);
        const bits = new Uint16Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 2);
        const mine = Float32Array.from(extractRoleMatrix(r, bits, t.shape), bf16BitsToF32);
        const want = quant.get(`${r.layer}:${r.expert}:${r.projection}`) as Float32Array;
        expect(
          Buffer.from(mine.buffer).equals(Buffer.from(want.buffer)),
          `${r.tensor} ${r.expert} ${r.projection}`,
        ).toBe(true);
        const theirs = ck.dequantize(packTarget(m.spec, r).module).weight;
        expect(Buffer.from(theirs.buffer, theirs.byteOffset, theirs.byteLength).equals(Buffer.from(want.buffer))).toBe(
          true,
        );
      }
    } finally {
      ck.close();
      m.close();
    }
  });

  it("forward on the MXFP4 checkpoint = forward on the bf16 fixture with the dequantized experts", async () => {
    const q = loadModel(dir);
    const base = loadModel(fixture);
    try {
      const byModule = new Map<string, Float32Array>();
      for (const r of roles)
        byModule.set(
          packTarget(base.spec, r).module,
          quant.get(`${r.layer}:${r.expert}:${r.projection}`) as Float32Array,
        );
      const overrides = refuseModules(base.spec, roles, base.source, (mod) => byModule.get(mod));
      expect([...overrides.keys()].length).toBe(6);
      const ids = Array.from({ length: 2 * 16 }, (_, i) => (i * 37 + 11) % 257);
      const a = await q.engine().forward(ids, 2, 16, { routerLogits: true });
      const b = await new Engine(base.spec, overlaySource(base.source, overrides)).forward(ids, 2, 16, {
        routerLogits: true,
      });
      expect(Buffer.from(a.logits.buffer).equals(Buffer.from(b.logits.buffer))).toBe(true);
      // and the quantization did change the model (the comparison above is not vacuous)
      const c = await base.engine().forward(ids, 2, 16);
      expect(Buffer.from(c.logits.buffer).equals(Buffer.from(a.logits.buffer))).toBe(false);
    } finally {
      q.close();
      base.close();
    }
  });
});

// The worked examples of ../shared/reference/formats.md, byte for byte, through the writers.

import { quantizeFp8, quantizeMxfp4, quantizeNvfp4 } from "@moeq/quant";
import { e4m3ToF32, f32Tensor } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import {
  compressedTensors,
  FormatError,
  fp8Block,
  getFormat,
  gptOssMxfp4,
  gptq,
  gptqV2,
  modelopt,
  UnknownFormatError,
} from "../src/index.ts";
import { f32, handInt, mod, passthroughFor, words } from "./helpers.ts";

const input = (modules: Parameters<typeof compressedTensors.write>[0]["modules"]) => ({
  modules,
  passthrough: passthroughFor(),
  modelConfig: { model_type: "qwen3_moe" },
});

describe("compressed-tensors pack-quantized words (formats.md §1)", () => {
  it("int4 [−7..0] → 0x87654321 and [1..7, −8] → 0x0FEDCBA9", () => {
    // signed q → stored code q + 8
    const row0 = [-7, -6, -5, -4, -3, -2, -1, 0].map((q) => q + 8);
    const row1 = [1, 2, 3, 4, 5, 6, 7, -8].map((q) => q + 8);
    const out = compressedTensors.write(input([mod("m.q_proj", handInt(2, 8, [...row0, ...row1], { bits: 4 }))]));
    const t = out.tensors.get("m.q_proj.weight_packed")!;
    expect(t.dtype).toBe("I32");
    expect(t.shape).toEqual([2, 1]);
    expect(words(t)).toEqual([0x87654321, 0x0fedcba9]);
    expect(Array.from(out.tensors.get("m.q_proj.weight_packed")!.data.subarray(0, 4))).toEqual([
      0x21, 0x43, 0x65, 0x87,
    ]);
    expect(out.tensors.has("m.q_proj.weight_zero_point")).toBe(false);
    const shape = out.tensors.get("m.q_proj.weight_shape")!;
    expect(shape.dtype).toBe("I64");
    expect(Array.from(new BigInt64Array(shape.data.slice().buffer))).toEqual([2n, 8n]);
  });
  it("int8 [1, 2, 3, 4] → 0x84838281", () => {
    const out = compressedTensors.write(input([mod("m.o", handInt(1, 4, [129, 130, 131, 132], { bits: 8 }))]));
    expect(words(out.tensors.get("m.o.weight_packed"))).toEqual([0x84838281]);
    const g = (out.config.quantization_config as any).config_groups.group_0;
    expect(g.weights).toMatchObject({
      num_bits: 8,
      type: "int",
      symmetric: true,
      strategy: "channel",
      group_size: null,
    });
    expect(g.format).toBe("pack-quantized");
  });
  it("asymmetric zero points are packed along the output dim with the same +8 offset, g_idx only for act-order", () => {
    // 8 rows, zero point of row r = r (unsigned) = r − 8 signed, stored r → word 0x76543210
    const codes = Array.from({ length: 8 * 4 }, (_, i) => i % 16);
    const zeros = [0, 1, 2, 3, 4, 5, 6, 7].flatMap((z) => [z, 15 - z]);
    const scales = new Array(16).fill(0.5);
    const q = handInt(8, 4, codes, { bits: 4, zeros, scales, groupSize: 2, gIdx: [1, 0, 1, 0] });
    const out = compressedTensors.write(input([mod("m.gate_proj", q)]));
    const zp = out.tensors.get("m.gate_proj.weight_zero_point")!;
    expect(zp.shape).toEqual([1, 2]);
    expect(words(zp)).toEqual([0x76543210, 0x89abcdef]);
    expect(Array.from(new Int32Array(out.tensors.get("m.gate_proj.weight_g_idx")!.data.slice().buffer))).toEqual([
      1, 0, 1, 0,
    ]);
    const w = (out.config.quantization_config as any).config_groups.group_0.weights;
    expect(w).toMatchObject({ symmetric: false, strategy: "group", group_size: 2, actorder: "group" });
    expect(out.tensors.get("m.gate_proj.weight_scale")!.dtype).toBe("BF16"); // 0.5 is exact in bf16
  });
});

describe("NVFP4 bytes (formats.md §1)", () => {
  it("[0.5, 1, 1.5, 2, 3, 4, 6, −0.5] → 21 43 65 97, even element in the low nibble", () => {
    const row = [0.5, 1, 1.5, 2, 3, 4, 6, -0.5, 0, 0, 0, 0, 0, 0, 0, 0];
    const q = quantizeNvfp4(Float32Array.from(row), 1, 16);
    const out = compressedTensors.write(input([mod("m.up_proj", q, { inputScale: 3 })]));
    const packed = out.tensors.get("m.up_proj.weight_packed")!;
    expect(packed.dtype).toBe("U8");
    expect(Array.from(packed.data)).toEqual([0x21, 0x43, 0x65, 0x97, 0, 0, 0, 0]);
    expect(f32(out.tensors.get("m.up_proj.weight_global_scale"))).toEqual([448]);
    expect(f32(out.tensors.get("m.up_proj.input_global_scale"))).toEqual([3]);
    const sc = out.tensors.get("m.up_proj.weight_scale")!;
    expect(sc.dtype).toBe("F8_E4M3");
    expect(e4m3ToF32(sc.data[0]!)).toBe(448);
    const g = (out.config.quantization_config as any).config_groups.group_0;
    expect(g.format).toBe("nvfp4-pack-quantized");
    expect(g.weights).toMatchObject({ num_bits: 4, type: "float", strategy: "tensor_group", group_size: 16 });
    expect(g.input_activations).toMatchObject({ strategy: "tensor_group", dynamic: "local" });
  });
  it("ModelOpt stores the same nibbles in `weight` with weight_scale_2 = amax/2688 as a 0-d tensor", () => {
    const row = [0.5, 1, 1.5, 2, 3, 4, 6, -0.5, 0, 0, 0, 0, 0, 0, 0, 0];
    const q = quantizeNvfp4(Float32Array.from(row), 1, 16, { convention: "modelopt" });
    const out = modelopt.write(input([mod("m.up_proj", q)]));
    expect(Array.from(out.tensors.get("m.up_proj.weight")!.data.subarray(0, 4))).toEqual([0x21, 0x43, 0x65, 0x97]);
    const s2 = out.tensors.get("m.up_proj.weight_scale_2")!;
    expect(s2.shape).toEqual([]);
    expect(f32(s2)).toEqual([Math.fround(6 / 2688)]);
    const hf = JSON.parse(out.extraFiles.get("hf_quant_config.json")!);
    expect(hf.quantization).toMatchObject({ quant_algo: "W4A16_NVFP4", group_size: 16 });
    expect(hf.quantization.exclude_modules).toEqual(["lm_head"]);
  });
});

describe("GPTQ words (formats.md §2)", () => {
  const sym4 = () => {
    // out 8, in 16, group 8: code of (o, i) = (o + i) % 16
    const codes = Array.from({ length: 8 * 16 }, (_, k) => (Math.floor(k / 16) + (k % 16)) % 16);
    return handInt(8, 16, codes, { bits: 4, scales: new Array(16).fill(0.25), groupSize: 8 });
  };
  it("4-bit symmetric qzeros: 0x77777777 (v1 stores z−1), 0x88888888 (v2)", () => {
    const v1 = gptq.write(input([mod("m.down_proj", sym4())]));
    const v2 = gptqV2.write(input([mod("m.down_proj", sym4())]));
    expect(v1.tensors.get("m.down_proj.qzeros")!.shape).toEqual([2, 1]);
    expect(words(v1.tensors.get("m.down_proj.qzeros"))).toEqual([0x77777777, 0x77777777]);
    expect(words(v2.tensors.get("m.down_proj.qzeros"))).toEqual([0x88888888, 0x88888888]);
    const qc = JSON.parse(v1.extraFiles.get("quantize_config.json")!);
    expect(qc).toMatchObject({
      bits: 4,
      group_size: 8,
      desc_act: false,
      sym: true,
      quant_method: "gptq",
      checkpoint_format: "gptq",
    });
    expect(JSON.parse(v2.extraFiles.get("quantize_config.json")!).checkpoint_format).toBe("gptq_v2");
  });
  it("qweight packs input 8r+j at bits 4j of row r, columns = outputs; scales are [groups, out]", () => {
    const out = gptq.write(input([mod("m.down_proj", sym4())]));
    const qw = out.tensors.get("m.down_proj.qweight")!;
    expect(qw.shape).toEqual([2, 8]);
    // row 0, column o holds codes (o+0..o+7)%16 → nibbles ascending from o
    const expectWord = (start: number) => {
      let w = 0;
      for (let j = 0; j < 8; j++) w |= ((start + j) % 16) << (4 * j);
      return w >>> 0;
    };
    const ws = words(qw);
    expect(ws[0]).toBe(0x76543210);
    for (let o = 0; o < 8; o++) {
      expect(ws[o]).toBe(expectWord(o));
      expect(ws[8 + o]).toBe(expectWord(o + 8));
    }
    expect(out.tensors.get("m.down_proj.scales")!.shape).toEqual([2, 8]);
    expect(out.tensors.get("m.down_proj.scales")!.dtype).toBe("F16");
    expect(Array.from(new Int32Array(out.tensors.get("m.down_proj.g_idx")!.data.slice().buffer))).toEqual(
      Array.from({ length: 16 }, (_, i) => Math.floor(i / 8)),
    );
  });
  it("v1 refuses a zero point of 0 (it would overflow), v2 stores it", () => {
    const zeros = new Array(8).fill(0);
    const q = () => handInt(8, 8, new Array(64).fill(3), { bits: 4, zeros, scales: new Array(8).fill(1) });
    expect(() => gptq.write(input([mod("m.x", q())]))).toThrow(/zero point 0.*gptq-v2/);
    expect(words(gptqV2.write(input([mod("m.x", q())])).tensors.get("m.x.qzeros"))).toEqual([0]);
  });
});

describe("MXFP4 scale bytes (formats.md §1, §4)", () => {
  it("scale byte = 127 + log2(scale); GPT-OSS interleaves gate (even) and up (odd) rows", () => {
    const I = 2;
    const H = 32;
    const gate = new Float32Array(I * H).fill(0.5); // amax 0.5 = 2^-1 → scale 2^-3 → byte 124
    const up = new Float32Array(I * H).fill(6); // byte 127
    const down = new Float32Array(H * I).fill(0); // I = 2 inputs: not a multiple of 32, refused below
    const gq = quantizeMxfp4(gate, I, H);
    const uq = quantizeMxfp4(up, I, H);
    expect(Array.from(gq.scales)).toEqual([124, 124]);
    expect(Array.from(uq.scales)).toEqual([127, 127]);
    const ct = compressedTensors.write(input([mod("m.gate_proj", gq)]));
    expect(Array.from(ct.tensors.get("m.gate_proj.weight_scale")!.data)).toEqual([124, 124]);
    expect(() => quantizeMxfp4(down, H, I)).toThrow(/multiple of the MXFP4 block/);
  });
  it("GPT-OSS fused layout: [E, 2I, H/32, 16] blocks and [E, 2I, H/32] scales", () => {
    const I = 32;
    const H = 64;
    const mk = (v: number, rows: number, cols: number) =>
      quantizeMxfp4(new Float32Array(rows * cols).fill(v), rows, cols);
    const modules = [0, 1].flatMap((e) => [
      mod(`model.layers.0.mlp.experts.${e}.gate_proj`, mk(1 + e, I, H)),
      mod(`model.layers.0.mlp.experts.${e}.up_proj`, mk(4, I, H)),
      mod(`model.layers.0.mlp.experts.${e}.down_proj`, mk(0.5, H, I)),
    ]);
    const out = gptOssMxfp4.write(input(modules));
    const s = out.tensors.get("model.layers.0.mlp.experts.gate_up_proj_scales")!;
    expect(s.shape).toEqual([2, 64, 2]);
    // expert 0: gate amax 1 → 125, up amax 4 → 127, alternating rows
    expect(Array.from(s.data.subarray(0, 6))).toEqual([125, 125, 127, 127, 125, 125]);
    // expert 1: gate amax 2 → 126
    expect(Array.from(s.data.subarray(128, 130))).toEqual([126, 126]);
    const b = out.tensors.get("model.layers.0.mlp.experts.gate_up_proj_blocks")!;
    expect(b.shape).toEqual([2, 64, 2, 16]);
    // gate 1 / 2^-2 = 4 → code 6 → byte 0x66; up 4 / 1 = 4 → 0x66 too; down 0.5/2^-3 = 4 → 0x66
    expect(b.data[0]).toBe(0x66);
    expect(out.tensors.get("model.layers.0.mlp.experts.down_proj_blocks")!.shape).toEqual([2, 64, 1, 16]);
    expect(out.config.quantization_config).toEqual({ quant_method: "mxfp4", modules_to_not_convert: ["lm_head"] });
  });
});

describe("FP8 block scale layout (formats.md §4)", () => {
  it("weight_scale_inv is [ceil(out/br), ceil(in/bc)] row-major, partial edge blocks use their own amax", () => {
    const w = Float32Array.from({ length: 5 * 7 }, (_, i) => (i % 7) + Math.floor(i / 7) * 10);
    const q = quantizeFp8(w, 5, 7, { strategy: "block", block: [2, 3] });
    const out = fp8Block.write(input([mod("model.layers.0.self_attn.o_proj", q)]));
    const s = out.tensors.get("model.layers.0.self_attn.o_proj.weight_scale_inv")!;
    expect(s.dtype).toBe("F32");
    expect(s.shape).toEqual([3, 3]);
    // block (bi, bj) amax = max over rows 2bi..2bi+1 (capped at 4), cols 3bj..3bj+2 (capped at 6)
    const amax = [12, 15, 16, 32, 35, 36, 42, 45, 46];
    expect(f32(s)).toEqual(amax.map((a) => Math.fround(a / 448)));
    expect(out.tensors.get("model.layers.0.self_attn.o_proj.weight")!.dtype).toBe("F8_E4M3");
    expect(out.config.quantization_config).toMatchObject({
      quant_method: "fp8",
      fmt: "e4m3",
      activation_scheme: "dynamic",
      weight_block_size: [2, 3],
    });
  });
});

describe("format registry and input checks", () => {
  it("getFormat lists valid names on an unknown one", () => {
    expect(getFormat("gptq").name).toBe("gptq");
    expect(() => getFormat("awq")).toThrow(UnknownFormatError);
    expect(() => getFormat("awq")).toThrow(/compressed-tensors, gptq, gptq-v2, modelopt, fp8-block, gpt-oss-mxfp4/);
  });
  it("refuses results a reader could not reproduce, naming the module", () => {
    const q = handInt(1, 8, [1, 2, 3, 4, 5, 6, 7, 8], { bits: 4 });
    (q.result.dequant as Float32Array)[3] += 1e-3;
    expect(() => compressedTensors.write(input([mod("layers.0.mlp.experts.3.up_proj", q)]))).toThrow(
      /layers\.0\.mlp\.experts\.3\.up_proj.*not \(code − zero\)·scale/,
    );
    const f = quantizeFp8(Float32Array.from([1, 2]), 1, 2, { strategy: "tensor" });
    expect(() => fp8Block.write(input([mod("a.b", f)]))).toThrow(FormatError);
    expect(() => modelopt.write(input([mod("a.b", f)]))).toThrow(/static input_scale/);
  });
  it("NVFP4 gate/up of one expert must share the global scale (vLLM fuses them)", () => {
    const a = quantizeNvfp4(new Float32Array(16).fill(1), 1, 16);
    const b = quantizeNvfp4(new Float32Array(16).fill(2), 1, 16);
    expect(() =>
      compressedTensors.write(input([mod("l.experts.0.gate_proj", a), mod("l.experts.0.up_proj", b)])),
    ).toThrow(/shared global scale/);
    const shared = quantizeNvfp4(new Float32Array(16).fill(2), 1, 16, { globalScale: a.globalScale });
    expect(() =>
      compressedTensors.write(input([mod("l.experts.0.gate_proj", a), mod("l.experts.0.up_proj", shared)])),
    ).not.toThrow();
  });
  it("the ignore list names every unquantized Linear (2-D weight) but not embeddings", () => {
    const out = compressedTensors.write({
      ...input([mod("m.q_proj", handInt(1, 8, [8, 8, 8, 8, 8, 8, 8, 8], { bits: 4 }))]),
      passthrough: new Map([
        ...passthroughFor(),
        ["model.layers.0.mlp.gate.weight", f32Tensor(new Float32Array(4), [2, 2])],
      ]),
    });
    expect(out.ignore).toEqual(["lm_head", "model.layers.0.mlp.gate"]);
    expect((out.config.quantization_config as any).ignore).toEqual(["lm_head", "model.layers.0.mlp.gate"]);
    expect(out.config.model_type).toBe("qwen3_moe");
  });
});

// Readers against hand-assembled tensors (as another producer would store them), independent of
// our writers: the worked examples of ../shared/reference/formats.md decoded back to values.
import { bytesOf, f32Tensor, fromF32, type Tensor } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import {
  mapSource,
  readCompressedTensors,
  readFp8Block,
  readGptOssMxfp4,
  readGptq,
  readModelopt,
} from "../src/index.ts";

const i32 = (xs: number[], shape: number[]): Tensor => ({
  dtype: "I32",
  shape,
  data: bytesOf(Int32Array.from(xs, (x) => x | 0)),
});
const i64 = (xs: number[], shape: number[]): Tensor => ({
  dtype: "I64",
  shape,
  data: bytesOf(BigInt64Array.from(xs.map(BigInt))),
});
const u8 = (xs: number[], shape: number[], dtype: Tensor["dtype"] = "U8"): Tensor => ({
  dtype,
  shape,
  data: Uint8Array.from(xs),
});

describe("compressed-tensors reader", () => {
  it("pack-quantized int4: 0x87654321 with scale 0.5 → (−7..0)·0.5; asym zero points unpacked along dim 0", () => {
    const src = mapSource(
      new Map<string, Tensor>([
        ["a.weight_packed", i32([0x87654321], [1, 1])],
        ["a.weight_scale", fromF32(Float32Array.of(0.5), "BF16", [1, 1])],
        ["a.weight_shape", i64([1, 8], [2])],
        ["b.weight_packed", i32([0x87654321, 0x87654321], [2, 1])],
        ["b.weight_scale", f32Tensor(Float32Array.of(1, 2), [2, 1])],
        ["b.weight_shape", i64([2, 8], [2])],
        ["b.weight_zero_point", i32([0x00000019], [1, 1])], // row 0: 9 (signed +1), row 1: 1 (signed −7)
      ]),
    );
    const r = readCompressedTensors({
      source: src,
      quantizationConfig: {
        config_groups: { g: { targets: ["Linear"], weights: { num_bits: 4, group_size: null, strategy: "channel" } } },
      },
    });
    expect(r.modules).toEqual(["a", "b"]);
    expect(Array.from(r.dequantize("a").weight)).toEqual([-3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0]);
    // b row 0: codes 1..8 minus zero 9 → −8..−1; row 1: codes 1..8 minus 1 → 0..7, times 2
    expect(Array.from(r.dequantize("b").weight)).toEqual([-8, -7, -6, -5, -4, -3, -2, -1, 0, 2, 4, 6, 8, 10, 12, 14]);
    expect(r.owns("b.weight_zero_point")).toBe(true);
  });
  it("int8 0x84838281 → [1, 2, 3, 4]; act-order g_idx picks each column's group", () => {
    const src = mapSource(
      new Map<string, Tensor>([
        ["m.weight_packed", i32([0x84838281], [1, 1])],
        ["m.weight_scale", f32Tensor(Float32Array.of(1, 10), [1, 2])],
        ["m.weight_shape", i64([1, 4], [2])],
        ["m.weight_g_idx", i32([1, 0, 0, 1], [4])],
      ]),
    );
    const r = readCompressedTensors({
      source: src,
      quantizationConfig: { config_groups: { g: { targets: ["re:.*"], weights: { num_bits: 8, group_size: 2 } } } },
    });
    expect(Array.from(r.dequantize("m").weight)).toEqual([10, 2, 3, 40]);
  });
  it("nvfp4: bytes 21 43 65 97 with block scale 448 and global 448 → the worked example", () => {
    const src = mapSource(
      new Map<string, Tensor>([
        ["m.weight_packed", u8([0x21, 0x43, 0x65, 0x97, 0, 0, 0, 0], [1, 8])],
        ["m.weight_scale", u8([0x7e], [1, 1], "F8_E4M3")],
        ["m.weight_global_scale", f32Tensor(Float32Array.of(448), [1])],
      ]),
    );
    const r = readCompressedTensors({ source: src, quantizationConfig: {} });
    expect(Array.from(r.dequantize("m").weight.subarray(0, 8))).toEqual([0.5, 1, 1.5, 2, 3, 4, 6, -0.5]);
  });
  it("a truncated tensor is a typed error naming it", () => {
    const src = mapSource(
      new Map<string, Tensor>([
        ["m.weight_packed", i32([1], [1, 1])],
        ["m.weight_scale", f32Tensor(Float32Array.of(1), [1, 1])],
        ["m.weight_shape", i64([1, 16], [2])],
      ]),
    );
    const r = readCompressedTensors({ source: src, quantizationConfig: {} });
    expect(() => r.dequantize("m")).toThrow(/m\.weight_packed" has shape \[1,1\], expected \[1,2\]/);
  });
});

describe("GPTQ reader", () => {
  it("v1 0x77777777 qzeros mean zero 8; v2 0x88888888 the same; qweight packs inputs down the rows", () => {
    // out 8, in 8, one group; qweight row 0, column o = codes of inputs 0..7 → 0x76543210 + o·0x11111111
    const qweight = Array.from({ length: 8 }, (_, o) => (0x76543210 + o * 0x11111111) | 0);
    for (const [fmt, word] of [
      ["gptq", 0x77777777],
      ["gptq_v2", 0x88888888],
    ] as const) {
      const src = mapSource(
        new Map<string, Tensor>([
          ["l.qweight", i32(qweight, [1, 8])],
          ["l.qzeros", i32([word], [1, 1])],
          ["l.scales", fromF32(new Float32Array(8).fill(0.25), "F16", [1, 8])],
          ["l.g_idx", i32(new Array(8).fill(0), [8])],
        ]),
      );
      const r = readGptq({ source: src, quantizationConfig: { bits: 4, group_size: -1, checkpoint_format: fmt } });
      const d = r.dequantize("l");
      expect([d.rows, d.cols]).toEqual([8, 8]);
      // element (o, i) = ((o + i) % 16 − 8)·0.25
      for (let o = 0; o < 8; o++)
        for (let i = 0; i < 8; i++) expect(d.weight[o * 8 + i]).toBe((((o + i) % 16) - 8) * 0.25);
    }
  });
});

describe("ModelOpt, FP8-block and GPT-OSS readers", () => {
  it("ModelOpt FP8: 0-d weight_scale multiplies the e4m3 codes", () => {
    const src = mapSource(
      new Map<string, Tensor>([
        ["m.weight", u8([0x38, 0xb8, 0x7e, 0x01], [2, 2], "F8_E4M3")],
        ["m.weight_scale", f32Tensor(Float32Array.of(0.5), [])],
        ["m.input_scale", f32Tensor(Float32Array.of(0.1), [])],
      ]),
    );
    const r = readModelopt({ source: src, quantizationConfig: { quant_algo: "FP8" } });
    expect(Array.from(r.dequantize("m").weight)).toEqual([0.5, -0.5, 224, 2 ** -10]);
    expect(r.owns("m.input_scale")).toBe(true);
  });
  it("FP8 block: weight_scale_inv [2, 1] over a 3×2 weight with 2×2 blocks (partial last block)", () => {
    const src = mapSource(
      new Map<string, Tensor>([
        ["m.weight", u8([0x38, 0x38, 0x38, 0x38, 0x40, 0xc0], [3, 2], "F8_E4M3")],
        ["m.weight_scale_inv", f32Tensor(Float32Array.of(3, 0.5), [2, 1])],
      ]),
    );
    const r = readFp8Block({ source: src, quantizationConfig: { weight_block_size: [2, 2] } });
    expect(Array.from(r.dequantize("m").weight)).toEqual([3, 3, 3, 3, 1, -1]);
  });
  it("GPT-OSS: low nibble first, 2^(scale−127), gate rows even and up rows odd", () => {
    const E = 1;
    const I = 1;
    const H = 32;
    const gate = new Array(16).fill(0x21); // elements 0.5, 1 alternating
    const up = new Array(16).fill(0x7f); // low nibble 0xf = −6, high 0x7 = 6
    const src = mapSource(
      new Map<string, Tensor>([
        ["x.experts.gate_up_proj_blocks", u8([...gate, ...up], [E, 2 * I, H / 32, 16])],
        ["x.experts.gate_up_proj_scales", u8([128, 126], [E, 2 * I, H / 32])],
        ["x.experts.down_proj_blocks", u8(new Array(32 * 16).fill(0), [E, H, 1, 16])],
        ["x.experts.down_proj_scales", u8(new Array(32).fill(127), [E, H, 1])],
      ]),
    );
    // I = 1 is not a whole MXFP4 block for down_proj's input, so only gate/up are decoded here.
    const r = readGptOssMxfp4({ source: src, quantizationConfig: {} });
    expect(r.modules).toEqual(["x.experts.0.gate_proj", "x.experts.0.up_proj", "x.experts.0.down_proj"]);
    expect(Array.from(r.dequantize("x.experts.0.gate_proj").weight.subarray(0, 4))).toEqual([1, 2, 1, 2]);
    expect(Array.from(r.dequantize("x.experts.0.up_proj").weight.subarray(0, 2))).toEqual([-3, 3]);
  });
});

describe("activation (input) quantization the readers report", () => {
  const fp8Module = (extra: [string, Tensor][]) =>
    mapSource(
      new Map<string, Tensor>([
        ["m.weight", u8([0x38, 0x38], [1, 2], "F8_E4M3")],
        ["m.weight_scale", f32Tensor(Float32Array.of(1), [1])],
        ...extra,
      ]),
    );
  const ct = (extra: [string, Tensor][], input_activations: Record<string, unknown> | null) =>
    readCompressedTensors({
      source: fp8Module(extra),
      quantizationConfig: {
        config_groups: {
          g: { targets: ["Linear"], weights: { num_bits: 8, type: "float", strategy: "tensor" }, input_activations },
        },
      },
    });
  it("compressed-tensors: static input_scale, dynamic per token / per group, int8 activations unsupported", () => {
    const scale = f32Tensor(Float32Array.of(0.25), [1]);
    expect(
      ct([["m.input_scale", scale]], { num_bits: 8, type: "float", strategy: "tensor", dynamic: false })
        .inputQuantization!("m"),
    ).toEqual({ kind: "fp8-tensor", scale: 0.25 });
    expect(ct([], { num_bits: 8, type: "float", strategy: "token", dynamic: true }).inputQuantization!("m")).toEqual({
      kind: "fp8-token",
    });
    expect(
      ct([], { num_bits: 8, type: "float", strategy: "group", group_size: 128, dynamic: true }).inputQuantization!("m"),
    ).toEqual({ kind: "fp8-token-group", groupSize: 128 });
    expect(ct([], null).inputQuantization!("m")).toBeNull();
    expect(
      ct([], { num_bits: 8, type: "int", strategy: "token", dynamic: true }).inputQuantization!("m"),
    ).toMatchObject({
      kind: "unsupported",
      reason: expect.stringMatching(/^m: input_activations .*int activations are not emulated/),
    });
    expect(
      ct([], { num_bits: 8, type: "float", strategy: "tensor", dynamic: false }).inputQuantization!("m"),
    ).toMatchObject({ kind: "unsupported", reason: expect.stringMatching(/without m\.input_scale/) });
  });
  it("a zero, non-finite or non-scalar input scale is a FormatError naming the tensor", () => {
    const cfg = { num_bits: 8, type: "float", strategy: "tensor", dynamic: false };
    expect(() => ct([["m.input_scale", f32Tensor(Float32Array.of(0), [1])]], cfg).inputQuantization!("m")).toThrow(
      /m\.input_scale is 0, expected a positive finite scale/,
    );
    expect(() =>
      ct([["m.input_scale", f32Tensor(Float32Array.of(Number.NaN), [1])]], cfg).inputQuantization!("m"),
    ).toThrow(/m\.input_scale is NaN/);
    expect(() => ct([["m.input_scale", f32Tensor(Float32Array.of(1, 2), [2])]], cfg).inputQuantization!("m")).toThrow(
      /m\.input_scale has 2 values/,
    );
    expect(() => ct([], cfg).inputQuantization!("nope")).toThrow(/module "nope" is not quantized/);
  });
  it("ModelOpt NVFP4: the served global scale is 1/input_scale; W4A16_NVFP4 is weight-only", () => {
    const src = mapSource(
      new Map<string, Tensor>([
        ["m.weight", u8(new Array(8).fill(0x21), [1, 8])],
        ["m.weight_scale", u8([0x38], [1, 1], "F8_E4M3")],
        ["m.weight_scale_2", f32Tensor(Float32Array.of(1), [])],
        ["m.input_scale", f32Tensor(Float32Array.of(0.5), [])],
      ]),
    );
    const side = (quant_algo: string) => ({
      source: src,
      quantizationConfig: {},
      sideConfig: { quantization: { quant_algo } },
    });
    expect(readModelopt(side("NVFP4")).inputQuantization!("m")).toEqual({ kind: "nvfp4", globalScale: 2 });
    expect(readModelopt(side("W4A16_NVFP4")).inputQuantization!("m")).toBeNull();
  });
  it("FP8 block (DeepSeek): dynamic activations per token and weight_block_size[1] columns", () => {
    const src = mapSource(
      new Map<string, Tensor>([
        ["m.weight", u8([0x38, 0x38], [1, 2], "F8_E4M3")],
        ["m.weight_scale_inv", f32Tensor(Float32Array.of(1), [1, 1])],
      ]),
    );
    const r = readFp8Block({
      source: src,
      quantizationConfig: { activation_scheme: "dynamic", weight_block_size: [128, 128] },
    });
    expect(r.inputQuantization!("m")).toEqual({ kind: "fp8-token-group", groupSize: 128 });
  });
});

// GPT-OSS as OpenAI ships it: experts stored MXFP4 as `<p>.gate_up_proj_blocks` U8 [E, 2I, H/32, 16]
// + `_scales` U8 [E, 2I, H/32] (and down_proj likewise [E, H, I/32, 16]). This source presents
// them as the bf16 layout transformers builds in memory (gate_up_proj [E, H, 2I], down_proj
// [E, I, H]: dequantized, then transposed), so the engine and the validator see one layout.
// Decoding: low nibble first, e2m1 × 2^(scale − 127) (formats.md §4, transformers' mxfp4.py).
import { e2m1Decode, f32ToBf16Bits, type Tensor } from "@moeq/tensor";
import { ModelWeightError } from "../errors.ts";
import { STORED_CODES, type WeightSource } from "../weights.ts";

/** bf16 bits of e2m1 code c × 2^(s − 127), at [s·16 + c] (s = 255 is NaN and refused). */
const BF16_OF = Uint16Array.from({ length: 256 * 16 }, (_, i) =>
  f32ToBf16Bits(e2m1Decode(i & 15) * 2 ** ((i >> 4) - 127)),
);

/** Checks blocks [E, rows, cols/32, 16] and scales [E, rows, cols/32]; returns [E, rows, nb]. */
function mxfp4Dims(blocks: Tensor, scales: Tensor, name: string): [number, number, number] {
  const bad = (why: string): never => {
    throw new ModelWeightError({ tensor: name, message: `MXFP4 '${name}_blocks' / '_scales': ${why}` });
  };
  if (blocks.dtype !== "U8" || blocks.shape.length !== 4 || blocks.shape[3] !== 16)
    bad(`blocks must be U8 [E, rows, cols/32, 16], got ${blocks.dtype} [${blocks.shape}]`);
  const [E, rows, nb] = blocks.shape as [number, number, number, number];
  if ((scales.dtype !== "U8" && scales.dtype !== "F8_E8M0") || scales.shape.join() !== [E, rows, nb].join())
    bad(`scales must be U8 [${E}, ${rows}, ${nb}], got ${scales.dtype} [${scales.shape}]`);
  if (blocks.data.byteLength !== E * rows * nb * 16 || scales.data.byteLength !== E * rows * nb)
    bad("byte sizes do not match the shapes");
  return [E, rows, nb];
}

/**
 * Dequantized [E, cols, rows] (transposed) from blocks [E, rows, cols/32, 16] and scales
 * [E, rows, cols/32], as BF16: e2m1 · 2^k has a 2-bit significand, so bf16 holds it exactly
 * (as transformers' dequantization does) at half the memory of f32.
 */
export function dequantizeMxfp4Transposed(blocks: Tensor, scales: Tensor, name: string): Tensor {
  const bad = (why: string): never => {
    throw new ModelWeightError({ tensor: name, message: `MXFP4 '${name}_blocks' / '_scales': ${why}` });
  };
  const [E, rows, nb] = mxfp4Dims(blocks, scales, name);
  const cols = nb * 32;
  const out = new Uint16Array(E * rows * cols);
  const b = blocks.data;
  const s = scales.data;
  for (let e = 0; e < E; e++)
    for (let r = 0; r < rows; r++)
      for (let g = 0; g < nb; g++) {
        const sc = s[(e * rows + r) * nb + g];
        if (sc === 0xff) bad(`scale of expert ${e}, row ${r}, block ${g} is the E8M0 NaN code 0xff`);
        const lut = BF16_OF.subarray(sc * 16, sc * 16 + 16);
        const b0 = ((e * rows + r) * nb + g) * 16;
        for (let j = 0; j < 16; j++) {
          const byte = b[b0 + j];
          const c = g * 32 + 2 * j;
          // transposed: element (r, c) of expert e lands at [e, c, r]
          out[(e * cols + c) * rows + r] = lut[byte & 15];
          out[(e * cols + c + 1) * rows + r] = lut[byte >> 4];
        }
      }
  return { dtype: "BF16", shape: [E, cols, rows], data: new Uint8Array(out.buffer) };
}

/**
 * Wraps a source so that `<p>.gate_up_proj` / `<p>.down_proj` come from `<p>.{gate_up,down}_proj_{blocks,scales}`
 * when only the MXFP4 pair exists. Decoded on each request, not kept: the engine's F32Weights
 * cache decides what stays in memory (a real model's decoded experts are gigabytes per layer).
 */
export function mxfp4ExpertSource(base: WeightSource): WeightSource {
  const virtual = new Map<string, { blocks: string; scales: string }>();
  for (const n of base.names()) {
    if (!n.endsWith("_blocks")) continue;
    const stem = n.slice(0, -"_blocks".length);
    if (!(stem.endsWith(".gate_up_proj") || stem.endsWith(".down_proj")) || base.has(stem)) continue;
    virtual.set(stem, { blocks: n, scales: `${stem}_scales` });
  }
  if (virtual.size === 0) return base;
  const hidden = new Set([...virtual.values()].flatMap((v) => [v.blocks, v.scales]));
  return {
    has: (n) => virtual.has(n) || base.has(n),
    tensor: (n) => {
      const v = virtual.get(n);
      if (!v) return base.tensor(n);
      if (!base.has(v.scales))
        throw new ModelWeightError({
          tensor: v.scales,
          message: `MXFP4 tensor '${v.scales}' is missing (next to '${v.blocks}')`,
        });
      const blocks = base.tensor(v.blocks);
      const scales = base.tensor(v.scales);
      // shapes checked now; values decoded when `data` is first read (or by the device engine on
      // the GPU from the stored codes)
      const [E, rows, nb] = mxfp4Dims(blocks, scales, n);
      let data: Uint8Array | null = null;
      return {
        dtype: "BF16" as const,
        shape: [E, nb * 32, rows],
        get data() {
          data ??= dequantizeMxfp4Transposed(blocks, scales, n).data;
          return data;
        },
        [STORED_CODES]: { kind: "mxfp4_transposed", blocks, scales },
      };
    },
    names: () => [...base.names().filter((n) => !hidden.has(n)), ...virtual.keys()],
  };
}

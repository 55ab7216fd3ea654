// FP8 block-quantized input checkpoints (DeepSeek-V3 / Kimi / MiniMax style): `<m>.weight`
// F8_E4M3 with `<m>.weight_scale_inv` F32 [ceil(out/br), ceil(in/bc)] (despite the name,
// w = fp8 · s). fp8BlockSource wraps any WeightSource so that every architecture reads such a
// checkpoint as if it were bf16: `<m>.weight` comes back as a BF16 tensor (transformers'
// dequantize=True rounding: bf16(f32(fp8) · s)) or F32, decoded when asked for, one tensor at a
// time, and the scale tensors disappear from the listing, so validation, `moeq inspect` and the
// quantizable-weights list all name the logical weight. Nothing is kept: the engine's bounded f32
// cache is the only copy, so the model is streamed, never duplicated whole.
import { native } from "@moeq/native";
import { fromF32, type Tensor } from "@moeq/tensor";
import { ModelWeightError } from "../errors.ts";
import { STORED_CODES, type WeightSource } from "../weights.ts";

const SCALE = ".weight_scale_inv";

export interface Fp8BlockOptions {
  /** quantization_config.weight_block_size (default [128, 128]). */
  readonly block?: readonly [number, number];
  /** What a dequantized weight is presented as (default BF16, as transformers dequantizes). */
  readonly dtype?: "BF16" | "F32";
  readonly label?: string;
}

/** weight_block_size from a config.json's quantization_config when it is an fp8 one. */
export function fp8BlockSize(config: Readonly<Record<string, unknown>>): readonly [number, number] | null {
  const q = config.quantization_config as Record<string, unknown> | undefined;
  if (!q || q.quant_method !== "fp8") return null;
  const b = q.weight_block_size;
  if (Array.isArray(b) && b.length === 2 && b.every((x) => Number.isInteger(x) && x > 0)) return [b[0], b[1]];
  return [128, 128];
}

/** f32 dequantization of one FP8 block-scaled weight: w[r, c] = f32(code) · s[⌊r/br⌋, ⌊c/bc⌋]. */
export function dequantizeFp8Block(
  name: string,
  codes: Tensor,
  scales: Float32Array,
  block: readonly [number, number],
): Float32Array {
  if (codes.shape.length !== 2)
    throw new ModelWeightError({
      tensor: name,
      message: `FP8 weight '${name}' has shape [${codes.shape}]; expected 2-D`,
    });
  const [rows, cols] = codes.shape as [number, number];
  const [br, bc] = block;
  const sr = Math.ceil(rows / br);
  const sc = Math.ceil(cols / bc);
  if (scales.length !== sr * sc)
    throw new ModelWeightError({
      tensor: `${name.slice(0, -".weight".length)}${SCALE}`,
      message: `'${name.slice(0, -".weight".length)}${SCALE}' has ${scales.length} values; ${br}×${bc} blocks over [${rows}, ${cols}] need [${sr}, ${sc}]`,
    });
  if (codes.data.byteLength !== rows * cols)
    throw new ModelWeightError({
      tensor: name,
      message: `FP8 weight '${name}' holds ${codes.data.byteLength} bytes, not ${rows}×${cols}`,
    });
  const out = new Float32Array(rows * cols);
  native.decodeToF32(codes.data, "f8_e4m3", out, rows * cols);
  for (let r = 0; r < rows; r++) {
    const srow = Math.floor(r / br) * sc;
    const o = r * cols;
    for (let c = 0; c < cols; c++) out[o + c] = Math.fround(out[o + c] * scales[srow + Math.floor(c / bc)]);
  }
  return out;
}

function scalesF32(t: Tensor, name: string): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  if (t.dtype === "F32") {
    new Uint8Array(out.buffer).set(t.data.subarray(0, n * 4));
    return out;
  }
  if (t.dtype === "BF16" || t.dtype === "F16") {
    const bits = new Uint16Array(n);
    new Uint8Array(bits.buffer).set(t.data.subarray(0, n * 2));
    if (t.dtype === "BF16") native.bf16ToF32(bits, out);
    else native.f16ToF32(bits, out);
    return out;
  }
  throw new ModelWeightError({
    tensor: name,
    message: `scale tensor '${name}' has dtype ${t.dtype}; expected F32, BF16 or F16`,
  });
}

/** `base` with every FP8 `<m>.weight` + `<m>.weight_scale_inv` pair read as one float weight. */
export function fp8BlockSource(base: WeightSource, opts: Fp8BlockOptions = {}): WeightSource {
  const block = opts.block ?? [128, 128];
  const dtype = opts.dtype ?? "BF16";
  const label = opts.label ?? "checkpoint";
  const isScale = (n: string) => n.endsWith(SCALE) && base.has(`${n.slice(0, -SCALE.length)}.weight`);
  const scaleOf = (n: string) => (n.endsWith(".weight") ? `${n.slice(0, -".weight".length)}${SCALE}` : null);
  return {
    has: (n) => base.has(n) && !isScale(n),
    names: () => base.names().filter((n) => !isScale(n)),
    tensor: (n) => {
      if (isScale(n))
        throw new ModelWeightError({
          tensor: n,
          message: `${label}: '${n}' is an FP8 block scale, read through '${n.slice(0, -SCALE.length)}.weight'`,
        });
      const t = base.tensor(n);
      const s = scaleOf(n);
      if (t.dtype !== "F8_E4M3") return t;
      if (!s || !base.has(s))
        throw new ModelWeightError({
          tensor: n,
          message: `${label}: FP8 weight '${n}' has no '${s ?? `${n}${SCALE}`}' block scales`,
        });
      const scales = scalesF32(base.tensor(s), s);
      // Decoded on first access to `data`: validation reads only dtype and shape.
      let data: Uint8Array | null = null;
      return {
        dtype,
        shape: t.shape,
        get data() {
          data ??= fromF32(dequantizeFp8Block(n, t, scales, block), dtype, t.shape).data;
          return data;
        },
        // the device engine decodes these codes on the GPU instead of reading `data`
        [STORED_CODES]: { kind: "fp8_block", codes: t, scales, block, dtype },
      };
    },
  };
}

// Integer weight-only quantization: the result shape shared by RTN and GPTQ, the per-group
// quantizer (the GPTQ reference's find_params, so RTN and GPTQ agree bit for bit when no error is
// propagated), and the typed errors.
//
// Codes are UNSIGNED: code ∈ [0, 2^b − 1], dequant = scale · (code − zero), with
//   symmetric:  zero = 2^(b−1) (= (maxq+1)/2), scale = 2·max|x| / (2^b − 1)
//   asymmetric: zero = round(−min(x,0) / scale) ∈ [0, 2^b − 1], scale = (max(x,0) − min(x,0)) / (2^b − 1)
// compressed-tensors stores SIGNED values: q_signed = code − 2^(b−1) ∈ [−2^(b−1), 2^(b−1) − 1],
// and (asymmetric only) weight_zero_point = zero − 2^(b−1); then scale·(q_signed − zp_signed) =
// scale·(code − zero). Symmetric schemes store no zero point there (it is 0 in the signed
// convention, i.e. zero = 2^(b−1) here). CT's pack-quantized layout then packs u = q_signed +
// 2^(b−1), which is exactly `code`. GPTQ-format checkpoints keep the unsigned code and zero
// (v1 stores zero − 1); see the formats package.
// A checkpoint stores each scale in some float dtype (compressed-tensors: the weight's dtype;
// GPTQ: f16), and readers decode f32((code − zero)·stored scale). So the scale is rounded to that
// dtype as soon as it is computed, and the zero point, codes and dequant all use the rounded
// value: dequant is then bit for bit what a reader decodes.
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "@moeq/tensor";
import { Data } from "effect";

export class IntQuantInputError extends Data.TaggedError("IntQuantInputError")<{
  readonly tensor: string;
  readonly reason: string;
}> {
  override get message() {
    return `${this.tensor}: ${this.reason}`;
  }
}

/** GPTQ could not run on valid-shaped input (e.g. a Hessian that is not positive definite). */
export class GptqNumericalError extends Data.TaggedError("GptqNumericalError")<{
  readonly tensor: string;
  readonly reason: string;
}> {
  override get message() {
    return `${this.tensor}: ${this.reason}`;
  }
}

/** The float dtype the group scales are stored in. */
export type ScaleDtype = "f32" | "bf16" | "f16";
export const scaleDtypes: readonly ScaleDtype[] = ["f32", "bf16", "f16"];

export interface IntQuantOptions {
  /** 2..8 */
  bits: number;
  /** the dtype the checkpoint stores scales in; every scale is exactly representable in it (default "f32") */
  scaleDtype?: ScaleDtype;
  /** input columns per group; −1 = one group per row (per channel) */
  groupSize: number;
  symmetric: boolean;
  /** names the tensor in error messages */
  name?: string;
}

export interface IntQuantResult {
  /** [rows·cols] unsigned codes 0..2^bits−1, original column order */
  codes: Uint8Array;
  /** [rows·nGroups], groups in quantization order (column order unless act-order); exact in scaleDtype */
  scales: Float32Array;
  /** [rows·nGroups] unsigned zero points */
  zeros: Int32Array;
  /** [cols] group of each input column */
  gIdx: Int32Array;
  /** [cols] column quantized j-th (act-order); absent = identity */
  perm?: Int32Array;
  /** [rows·cols] f32(scale·(code − zero)), bit for bit what a checkpoint reader decodes */
  dequant: Float32Array;
  bits: number;
  groupSize: number;
  symmetric: boolean;
}

/** torch.round: half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export const maxCode = (bits: number) => 2 ** bits - 1;

export function groupCount(cols: number, groupSize: number): number {
  return Math.ceil(cols / (groupSize === -1 ? cols : groupSize));
}

// Smallest positive value of each dtype: an underflowing scale becomes this, so codes stay finite.
const minPositive: Record<ScaleDtype, number> = { f32: 2 ** -149, bf16: 2 ** -133, f16: 2 ** -24 };

/**
 * A positive scale as `dtype` stores it: f64 → f32 → bf16/f16, each step round-to-nearest-even
 * (PyTorch's casts). Underflow gives the dtype's smallest positive value; overflow gives Infinity,
 * which callers must refuse.
 */
export function roundScale(scale: number, dtype: ScaleDtype): number {
  const f = Math.fround(scale);
  const v = dtype === "f32" ? f : dtype === "bf16" ? bf16BitsToF32(f32ToBf16Bits(f)) : f16BitsToF32(f32ToF16Bits(f));
  return v === 0 ? minPositive[dtype] : v;
}

/**
 * scale / zero from a clipping range [xmin ≤ 0 ≤ xmax] (already symmetrised when sym); the scale
 * is rounded to `scaleDtype` first and the zero point derived from it (clamped: a scale rounded
 * down can put −xmin/scale just past maxq).
 */
export function paramsFromRange(
  xmin: number,
  xmax: number,
  bits: number,
  symmetric: boolean,
  scaleDtype: ScaleDtype = "f32",
) {
  const maxq = maxCode(bits);
  const scale = roundScale((xmax - xmin) / maxq, scaleDtype);
  const zero = symmetric ? (maxq + 1) / 2 : Math.min(maxq, Math.max(0, roundHalfEven(-xmin / scale)));
  return { scale, zero };
}

/** dequant as a checkpoint reader computes it from a stored scale. */
export const intDequantValue = (code: number, zero: number, scale: number): number =>
  Math.fround((code - zero) * scale);

/** The min/max range of values[start, start+len), clamped to include 0, symmetrised, never empty. */
export function minMaxRange(values: ArrayLike<number>, start: number, len: number, symmetric: boolean) {
  let xmin = 0;
  let xmax = 0;
  for (let i = start; i < start + len; i++) {
    const v = values[i];
    if (v < xmin) xmin = v;
    if (v > xmax) xmax = v;
  }
  if (symmetric) {
    xmax = Math.max(-xmin, xmax);
    xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  return { xmin, xmax };
}

export function quantCode(x: number, scale: number, zero: number, maxq: number): number {
  return Math.min(maxq, Math.max(0, roundHalfEven(x / scale) + zero));
}

export function validateIntOptions(
  tensor: string,
  w: Float32Array,
  rows: number,
  cols: number,
  o: { bits: number; groupSize: number; scaleDtype?: ScaleDtype },
): void {
  const fail = (reason: string) => {
    throw new IntQuantInputError({ tensor, reason });
  };
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0)
    fail(`shape [${rows}, ${cols}] must be positive integers`);
  if (!(w instanceof Float32Array)) fail("weight must be a Float32Array");
  if (w.length !== rows * cols) fail(`weight has ${w.length} values, shape [${rows}, ${cols}] needs ${rows * cols}`);
  if (!Number.isInteger(o.bits) || o.bits < 2 || o.bits > 8) fail(`bits must be an integer in 2..8, got ${o.bits}`);
  if (!(o.groupSize === -1 || (Number.isInteger(o.groupSize) && o.groupSize > 0)))
    fail(`groupSize must be -1 (per channel) or a positive integer, got ${o.groupSize}`);
  if (o.scaleDtype !== undefined && !scaleDtypes.includes(o.scaleDtype))
    fail(`scaleDtype must be one of ${scaleDtypes.join(", ")}, got ${String(o.scaleDtype)}`);
  for (let i = 0; i < w.length; i++)
    if (!Number.isFinite(w[i])) fail(`weight[${Math.floor(i / cols)}, ${i % cols}] is ${w[i]}`);
}

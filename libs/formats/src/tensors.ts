// Small builders and decoders between typed arrays and safetensors tensors.
import { bytesOf, type DType, dtypeBytes, fromF32, numel, type Tensor, toF32 } from "@moeq/tensor";
import { FormatError } from "./errors.ts";

export const i32Tensor = (x: Int32Array, shape: readonly number[]): Tensor => ({
  dtype: "I32",
  shape,
  data: bytesOf(x),
});
export const u8Tensor = (x: Uint8Array, shape: readonly number[], dtype: DType = "U8"): Tensor => ({
  dtype,
  shape,
  data: x,
});
export const i64Tensor = (x: readonly number[], shape: readonly number[]): Tensor => ({
  dtype: "I64",
  shape,
  data: bytesOf(BigInt64Array.from(x, (v) => BigInt(v))),
});
export const floatTensor = (x: ArrayLike<number>, dtype: DType, shape: readonly number[]): Tensor =>
  fromF32(Float32Array.from(x), dtype, shape);

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/** A tensor of one of `dtypes` with exactly `shape`, else a FormatError naming it. */
export const expectTensor = (
  format: string,
  name: string,
  t: Tensor | undefined,
  dtypes: readonly DType[],
  shape?: readonly number[],
): Tensor => {
  if (t === undefined) throw new FormatError({ format, reason: `tensor "${name}" is missing` });
  if (!dtypes.includes(t.dtype)) {
    throw new FormatError({ format, reason: `tensor "${name}" has dtype ${t.dtype}, expected ${dtypes.join(" or ")}` });
  }
  if (shape && !sameShape(t.shape, shape)) {
    throw new FormatError({ format, reason: `tensor "${name}" has shape [${t.shape}], expected [${shape}]` });
  }
  if (t.data.byteLength !== numel(t.shape) * dtypeBytes(t.dtype)) {
    throw new FormatError({
      format,
      reason: `tensor "${name}" holds ${t.data.byteLength} bytes, its shape needs ${numel(t.shape) * dtypeBytes(t.dtype)}`,
    });
  }
  return t;
};

export const asI32 = (t: Tensor): Int32Array => {
  const d = t.data;
  const copy = d.byteOffset % 4 === 0 ? d : d.slice();
  return new Int32Array(copy.buffer, copy.byteOffset, Math.floor(copy.byteLength / 4));
};

export const asI64 = (t: Tensor): number[] => {
  const d = t.data.slice();
  return Array.from(new BigInt64Array(d.buffer, 0, Math.floor(d.byteLength / 8)), (v) => Number(v));
};

export const asF32 = (t: Tensor): Float32Array => toF32(t);

/** The first dtype among `candidates` that holds every value exactly (the last one is the fallback). */
export const exactDtype = (values: ArrayLike<number>, candidates: readonly DType[]): DType => {
  for (const d of candidates) {
    const back = toF32(fromF32(Float32Array.from(values), d, [values.length]));
    let ok = true;
    for (let i = 0; i < values.length && ok; i++) ok = back[i] === Math.fround(values[i]!);
    if (ok) return d;
  }
  return candidates[candidates.length - 1]!;
};

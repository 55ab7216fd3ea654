// A tensor is a dtype, a shape and its little-endian row-major bytes (often a view into an mmap).
import type { DType } from "./dtype.ts";

export interface Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

export const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export const f32Tensor = (x: Float32Array, shape: readonly number[]): Tensor => ({
  dtype: "F32",
  shape: [...shape],
  data: bytesOf(x),
});

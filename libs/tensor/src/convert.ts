// Whole-array conversions to and from f32, element by element with the scalar rules of
// floatbits.ts (PyTorch's rounding). Integer targets follow torch's float→int cast: truncate
// toward zero; NaN gives 0 and out-of-range values saturate (torch leaves those undefined).
import { type DType, dtypeBytes, numel } from "./dtype.ts";
import {
  e4m3DecodeTable,
  e5m2DecodeTable,
  e8m0ToF32,
  f16DecodeTable,
  f32BitsToBf16Bits,
  f32BitsToE4m3,
  f32BitsToE5m2,
  f32BitsToE8m0,
  f32BitsToF16Bits,
} from "./floatbits.ts";
import type { Tensor } from "./tensor.ts";

export class DTypeError extends Error {
  override readonly name = "DTypeError";
}

// A typed view when the bytes are aligned for it, else an aligned copy (a tensor's offset inside
// a safetensors file need not be a multiple of its element size).
function aligned<T>(
  data: Uint8Array,
  size: number,
  make: (b: ArrayBuffer | SharedArrayBuffer, off: number, n: number) => T,
): T {
  const n = Math.floor(data.byteLength / size);
  if (data.byteOffset % size === 0) return make(data.buffer, data.byteOffset, n);
  const copy = data.slice(0, n * size);
  return make(copy.buffer, 0, n);
}

// int64 → f32 as a single rounding: keep 53 bits with a sticky bit (round-to-odd) so that the
// final f32 rounding cannot be a double-rounding error.
function bigToF32(v: bigint): number {
  const neg = v < 0n;
  let a = neg ? -v : v;
  if (a < 2n ** 53n) return Math.fround(neg ? -Number(a) : Number(a));
  const shift = BigInt(a.toString(2).length - 53);
  const sticky = (a & ((1n << shift) - 1n)) !== 0n ? 1n : 0n;
  a = (a >> shift) | sticky;
  const x = Number(a) * 2 ** Number(shift);
  return Math.fround(neg ? -x : x);
}

const E8M0_DECODE = Float32Array.from({ length: 256 }, (_, c) => e8m0ToF32(c));

export function toF32(t: Pick<Tensor, "dtype" | "data">, out?: Float32Array): Float32Array {
  const size = dtypeBytes(t.dtype);
  if (t.data.byteLength % size !== 0)
    throw new DTypeError(`toF32: ${t.data.byteLength} bytes is not a whole number of ${t.dtype} elements`);
  const n = t.data.byteLength / size;
  const o = out ?? new Float32Array(n);
  if (o.length < n) throw new DTypeError(`toF32: output holds ${o.length} elements, need ${n}`);
  const d = t.data;
  switch (t.dtype) {
    case "F32":
      o.set(aligned(d, 4, (b, off, k) => new Float32Array(b, off, k)));
      break;
    case "F64": {
      const src = aligned(d, 8, (b, off, k) => new Float64Array(b, off, k));
      for (let i = 0; i < n; i++) o[i] = src[i];
      break;
    }
    case "BF16": {
      const src = aligned(d, 2, (b, off, k) => new Uint16Array(b, off, k));
      const u = new Uint32Array(o.buffer, o.byteOffset, n);
      for (let i = 0; i < n; i++) u[i] = src[i] << 16;
      break;
    }
    case "F16": {
      const src = aligned(d, 2, (b, off, k) => new Uint16Array(b, off, k));
      const tab = f16DecodeTable();
      for (let i = 0; i < n; i++) o[i] = tab[src[i]];
      break;
    }
    case "F8_E4M3":
    case "F8_E5M2":
    case "F8_E8M0": {
      const tab = t.dtype === "F8_E4M3" ? e4m3DecodeTable() : t.dtype === "F8_E5M2" ? e5m2DecodeTable() : E8M0_DECODE;
      for (let i = 0; i < n; i++) o[i] = tab[d[i]];
      break;
    }
    case "U8":
    case "BOOL":
      for (let i = 0; i < n; i++) o[i] = d[i];
      break;
    case "I8": {
      const src = new Int8Array(d.buffer, d.byteOffset, n);
      for (let i = 0; i < n; i++) o[i] = src[i];
      break;
    }
    case "I16":
    case "U16": {
      const src = aligned(d, 2, (b, off, k) =>
        t.dtype === "I16" ? new Int16Array(b, off, k) : new Uint16Array(b, off, k),
      );
      for (let i = 0; i < n; i++) o[i] = src[i];
      break;
    }
    case "I32":
    case "U32": {
      const src = aligned(d, 4, (b, off, k) =>
        t.dtype === "I32" ? new Int32Array(b, off, k) : new Uint32Array(b, off, k),
      );
      for (let i = 0; i < n; i++) o[i] = src[i];
      break;
    }
    case "I64":
    case "U64": {
      const src = aligned(d, 8, (b, off, k) =>
        t.dtype === "I64" ? new BigInt64Array(b, off, k) : new BigUint64Array(b, off, k),
      );
      for (let i = 0; i < n; i++) o[i] = bigToF32(src[i]);
      break;
    }
    default:
      throw new DTypeError(`toF32: ${t.dtype} is not a real numeric dtype`);
  }
  return o;
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  I8: [-128, 127],
  U8: [0, 255],
  I16: [-32768, 32767],
  U16: [0, 65535],
  I32: [-2147483648, 2147483647],
  U32: [0, 4294967295],
};

const toInt = (v: number, lo: number, hi: number): number =>
  Number.isNaN(v) ? 0 : Math.min(hi, Math.max(lo, Math.trunc(v)));

export function fromF32(x: Float32Array, dtype: DType, shape: readonly number[]): Tensor {
  const n = numel(shape);
  if (n !== x.length) throw new DTypeError(`fromF32: shape [${shape.join(",")}] holds ${n} elements, got ${x.length}`);
  const out = new Uint8Array(n * dtypeBytes(dtype));
  const u = new Uint32Array(x.buffer, x.byteOffset, n);
  switch (dtype) {
    case "F32":
      out.set(new Uint8Array(x.buffer, x.byteOffset, n * 4));
      break;
    case "F64": {
      const o = new Float64Array(out.buffer);
      for (let i = 0; i < n; i++) o[i] = x[i];
      break;
    }
    case "BF16": {
      const o = new Uint16Array(out.buffer);
      for (let i = 0; i < n; i++) o[i] = f32BitsToBf16Bits(u[i]);
      break;
    }
    case "F16": {
      const o = new Uint16Array(out.buffer);
      for (let i = 0; i < n; i++) o[i] = f32BitsToF16Bits(u[i]);
      break;
    }
    case "F8_E4M3":
      for (let i = 0; i < n; i++) out[i] = f32BitsToE4m3(u[i]);
      break;
    case "F8_E5M2":
      for (let i = 0; i < n; i++) out[i] = f32BitsToE5m2(u[i]);
      break;
    case "F8_E8M0":
      for (let i = 0; i < n; i++) out[i] = f32BitsToE8m0(u[i]);
      break;
    case "BOOL":
      for (let i = 0; i < n; i++) out[i] = x[i] !== 0 ? 1 : 0;
      break;
    case "I64":
    case "U64": {
      const o = dtype === "I64" ? new BigInt64Array(out.buffer) : new BigUint64Array(out.buffer);
      const [lo, hi] = dtype === "I64" ? [-(2 ** 63), 2 ** 63 - 1] : [0, 2 ** 64 - 1];
      for (let i = 0; i < n; i++) {
        const v = toInt(x[i], lo, hi);
        // 2^63 − 1 is not a double: clamp in bigint space so the top value stays in range
        let b = BigInt(v);
        if (dtype === "I64" && b > 2n ** 63n - 1n) b = 2n ** 63n - 1n;
        if (dtype === "U64" && b > 2n ** 64n - 1n) b = 2n ** 64n - 1n;
        o[i] = b;
      }
      break;
    }
    default: {
      const r = INT_RANGE[dtype];
      if (!r) throw new DTypeError(`fromF32: cannot encode ${dtype}`);
      const view = new DataView(out.buffer);
      const size = dtypeBytes(dtype);
      for (let i = 0; i < n; i++) {
        const v = toInt(x[i], r[0], r[1]);
        if (size === 1) view.setUint8(i, v & 0xff);
        else if (size === 2) view.setUint16(i * 2, v & 0xffff, true);
        else view.setUint32(i * 4, v >>> 0, true);
      }
    }
  }
  return { dtype, shape: [...shape], data: out };
}

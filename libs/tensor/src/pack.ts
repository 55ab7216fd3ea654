// Bit packing used by quantized checkpoint formats (see shared reference formats.md §1–2):
// - int4/int8 codes in I32 words, LSB first: element i of a row sits at bit i·b of word i·b/32,
//   rows padded with zero codes to whole words (compressed-tensors pack-quantized, GPTQ qzeros);
// - the same along dim 0 (GPTQ qweight, compressed-tensors zero points);
// - FP4 E2M1 nibbles, even element in the low nibble (NVFP4, MXFP4).

export type PackBits = 4 | 8;

const checkBits = (bits: number) => {
  if (bits !== 4 && bits !== 8) throw new RangeError(`pack: bits must be 4 or 8, got ${bits}`);
};

export const packedWords = (n: number, bits: PackBits): number => Math.ceil((n * bits) / 32);

// Unsigned codes [rows, cols] → I32 words [rows, ceil(cols·b/32)].
export function packRows(codes: ArrayLike<number>, rows: number, cols: number, bits: PackBits): Int32Array {
  checkBits(bits);
  if (codes.length !== rows * cols) throw new RangeError(`packRows: ${codes.length} codes for [${rows},${cols}]`);
  const w = packedWords(cols, bits);
  const out = new Int32Array(rows * w);
  const per = 32 / bits;
  const mask = (1 << bits) - 1;
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const v = codes[r * cols + c];
      if (v < 0 || v > mask || !Number.isInteger(v))
        throw new RangeError(`packRows: code ${v} at [${r},${c}] does not fit ${bits} bits`);
      out[r * w + Math.floor(c / per)] |= v << ((c % per) * bits);
    }
  return out;
}

export function unpackRows(words: Int32Array, rows: number, cols: number, bits: PackBits): Uint8Array {
  checkBits(bits);
  const w = packedWords(cols, bits);
  if (words.length !== rows * w)
    throw new RangeError(`unpackRows: ${words.length} words for [${rows},${cols}] at ${bits} bits`);
  const out = new Uint8Array(rows * cols);
  const per = 32 / bits;
  const mask = (1 << bits) - 1;
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++)
      out[r * cols + c] = (words[r * w + Math.floor(c / per)] >>> ((c % per) * bits)) & mask;
  return out;
}

// Unsigned codes [rows, cols] → I32 words [ceil(rows·b/32), cols], packing down each column.
export function packCols(codes: ArrayLike<number>, rows: number, cols: number, bits: PackBits): Int32Array {
  checkBits(bits);
  if (codes.length !== rows * cols) throw new RangeError(`packCols: ${codes.length} codes for [${rows},${cols}]`);
  const per = 32 / bits;
  const mask = (1 << bits) - 1;
  const out = new Int32Array(packedWords(rows, bits) * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const v = codes[r * cols + c];
      if (v < 0 || v > mask || !Number.isInteger(v))
        throw new RangeError(`packCols: code ${v} at [${r},${c}] does not fit ${bits} bits`);
      out[Math.floor(r / per) * cols + c] |= v << ((r % per) * bits);
    }
  return out;
}

export function unpackCols(words: Int32Array, rows: number, cols: number, bits: PackBits): Uint8Array {
  checkBits(bits);
  if (words.length !== packedWords(rows, bits) * cols)
    throw new RangeError(`unpackCols: ${words.length} words for [${rows},${cols}]`);
  const per = 32 / bits;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++)
      out[r * cols + c] = (words[Math.floor(r / per) * cols + c] >>> ((r % per) * bits)) & mask;
  return out;
}

// Signed integers stored with the offset 2^(b−1) (int4: q+8, int8: q+128), as pack-quantized does.
const offsetCodes = (q: ArrayLike<number>, bits: PackBits): Uint8Array => {
  const off = 1 << (bits - 1);
  const out = new Uint8Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const v = q[i];
    if (!Number.isInteger(v) || v < -off || v >= off)
      throw new RangeError(`pack: ${v} at ${i} is not a signed ${bits}-bit integer`);
    out[i] = v + off;
  }
  return out;
};
const signedFromCodes = (codes: Uint8Array, bits: PackBits): Int8Array => {
  const off = 1 << (bits - 1);
  const out = new Int8Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = codes[i] - off;
  return out;
};

export const packInt4 = (q: ArrayLike<number>, rows: number, cols: number): Int32Array =>
  packRows(offsetCodes(q, 4), rows, cols, 4);
export const unpackInt4 = (w: Int32Array, rows: number, cols: number): Int8Array =>
  signedFromCodes(unpackRows(w, rows, cols, 4), 4);
export const packInt8 = (q: ArrayLike<number>, rows: number, cols: number): Int32Array =>
  packRows(offsetCodes(q, 8), rows, cols, 8);
export const unpackInt8 = (w: Int32Array, rows: number, cols: number): Int8Array =>
  signedFromCodes(unpackRows(w, rows, cols, 8), 8);

// ---- FP4 E2M1: code = sign<<3 | index into E2M1_VALUES.
export const E2M1_VALUES: readonly number[] = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

// Nearest grid value with ties to the *smaller* magnitude, and saturation at 6: compressed-tensors
// takes argmin |x − grid| and argmin keeps the first minimum. Sign from the sign bit, so −0 → 0x8.
// NaN → magnitude index 0 (argmin over NaN distances returns the first index).
export function e2m1Encode(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 8 : 0;
  const a = Math.abs(x);
  if (!(a > 0.25)) return sign; // includes NaN and the 0.25 tie
  let idx: number;
  if (a <= 0.75) idx = 1;
  else if (a <= 1.25) idx = 2;
  else if (a <= 1.75) idx = 3;
  else if (a <= 2.5) idx = 4;
  else if (a <= 3.5) idx = 5;
  else if (a <= 5) idx = 6;
  else idx = 7;
  return sign | idx;
}

export const e2m1Decode = (code: number): number => (code & 8 ? -1 : 1) * E2M1_VALUES[code & 7];

// Two codes per byte, element 2j in the low nibble; an odd count leaves the last high nibble 0.
export function packNibbles(codes: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (!Number.isInteger(c) || c < 0 || c > 15) throw new RangeError(`packNibbles: ${c} at ${i} is not a 4-bit code`);
    out[i >> 1] |= i & 1 ? c << 4 : c;
  }
  return out;
}

export function unpackNibbles(bytes: Uint8Array, n: number): Uint8Array {
  if (bytes.length < Math.ceil(n / 2))
    throw new RangeError(`unpackNibbles: ${bytes.length} bytes hold fewer than ${n} nibbles`);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = i & 1 ? bytes[i >> 1] >>> 4 : bytes[i >> 1] & 15;
  return out;
}

export const packE2M1 = (x: ArrayLike<number>): Uint8Array => packNibbles(Array.from(x, e2m1Encode));
export const unpackE2M1 = (bytes: Uint8Array, n: number): Float32Array =>
  Float32Array.from(unpackNibbles(bytes, n), e2m1Decode);

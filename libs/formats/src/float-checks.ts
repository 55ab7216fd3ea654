// Float results are checked before they are written, like the integer ones: the stored codes
// and scales must decode (by the readers' formulas) to exactly the quantizer's dequant.
import {
  dequantizeFp8,
  dequantizeMxfp4,
  dequantizeNvfp4,
  type Fp8Quantized,
  fp8ScaleTile,
  type Mxfp4Quantized,
  type Nvfp4Quantized,
} from "@moeq/quant";
import { FormatError } from "./errors.ts";

const sameBits = (a: Float32Array, b: Float32Array): number => {
  if (a.length !== b.length) return 0;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i] && !(a[i] === 0 && b[i] === 0)) return i;
  return -1;
};

const check = (format: string, name: string, decoded: Float32Array, q: { dequant: Float32Array }) => {
  const i = sameBits(decoded, q.dequant);
  if (i !== -1) {
    throw new FormatError({
      format,
      reason: `${name}: stored codes and scales decode to ${decoded[i]} at element ${i}, the quantizer measured ${q.dequant[i]}`,
    });
  }
};

export const checkFp8 = (format: string, name: string, q: Fp8Quantized): void => {
  if (q.codes.length !== q.rows * q.cols)
    throw new FormatError({ format, reason: `${name}: codes do not fill [${q.rows}, ${q.cols}]` });
  const tile = fp8ScaleTile(q.strategy, q.rows, q.cols, q.block);
  if (q.scales.length !== Math.ceil(q.rows / tile[0]) * Math.ceil(q.cols / tile[1])) {
    throw new FormatError({
      format,
      reason: `${name}: ${q.scales.length} scales do not match the ${q.strategy} layout`,
    });
  }
  check(format, name, dequantizeFp8(q.codes, q.scales, q.rows, q.cols, tile), q);
};

export const checkNvfp4 = (format: string, name: string, q: Nvfp4Quantized): void => {
  if (q.cols % 16 !== 0 || q.codes.length !== q.rows * q.cols || q.blockScales.length !== (q.rows * q.cols) / 16) {
    throw new FormatError({
      format,
      reason: `${name}: NVFP4 codes/scales do not fit [${q.rows}, ${q.cols}] with 16-element blocks`,
    });
  }
  check(format, name, dequantizeNvfp4(q.codes, q.blockScales, q.globalScale, q.convention, q.rows, q.cols), q);
};

export const checkMxfp4 = (format: string, name: string, q: Mxfp4Quantized): void => {
  if (q.cols % 32 !== 0 || q.codes.length !== q.rows * q.cols || q.scales.length !== (q.rows * q.cols) / 32) {
    throw new FormatError({
      format,
      reason: `${name}: MXFP4 codes/scales do not fit [${q.rows}, ${q.cols}] with 32-element blocks`,
    });
  }
  check(format, name, dequantizeMxfp4(q.codes, q.scales, q.rows, q.cols), q);
};

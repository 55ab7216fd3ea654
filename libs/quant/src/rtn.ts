// Round-to-nearest integer quantization with the GPTQ reference's quantizer, so that GPTQ with
// no error feedback (H ∝ I) and RTN give identical codes. "mse" clipping shrinks each group's
// range by factors p = 1, 1 − 1/grid, … (down to 1 − maxShrink) and keeps the p minimising
// Σ|dequant − x|^norm: the search of GPTQ's Quantizer (mse=True: grid 100, maxshrink 0.8,
// norm 2.4); llm-compressor's MSE observer runs the same search with maxshrink 0.2 and stops after
// `patience` (5) candidates without improvement — pass those to reproduce it. Candidates are
// scored with their scale already rounded to the stored dtype: the error of what will be served.
import {
  groupCount,
  IntQuantInputError,
  intDequantValue,
  type IntQuantOptions,
  type IntQuantResult,
  maxCode,
  minMaxRange,
  paramsFromRange,
  quantCode,
  type ScaleDtype,
  validateIntOptions,
} from "./int.ts";

export interface MseClipOptions {
  grid?: number;
  maxShrink?: number;
  norm?: number;
  /** stop after this many shrink steps without improvement (default: search the whole grid) */
  patience?: number;
}

export interface RtnOptions extends IntQuantOptions {
  clip: "minmax" | "mse";
  mse?: MseClipOptions;
}

function mseParams(
  w: Float32Array,
  start: number,
  len: number,
  xmin: number,
  xmax: number,
  bits: number,
  symmetric: boolean,
  scaleDtype: ScaleDtype,
  o: Required<MseClipOptions>,
) {
  const maxq = maxCode(bits);
  let best = Number.POSITIVE_INFINITY;
  let bestParams = paramsFromRange(xmin, xmax, bits, symmetric, scaleDtype);
  let sinceBest = 0;
  const steps = Math.floor(o.maxShrink * o.grid);
  for (let i = 0; i < steps; i++) {
    const p = 1 - i / o.grid;
    const cand = paramsFromRange(p * xmin, p * xmax, bits, symmetric, scaleDtype);
    let err = 0;
    for (let j = start; j < start + len; j++) {
      const q = cand.scale * (quantCode(w[j], cand.scale, cand.zero, maxq) - cand.zero);
      err += Math.abs(q - w[j]) ** o.norm;
    }
    if (err < best) {
      best = err;
      bestParams = cand;
      sinceBest = 0;
    } else if (++sinceBest >= o.patience) break;
  }
  return bestParams;
}

/** RTN of W [rows, cols] (row-major, PyTorch Linear layout: rows = output channels). */
export function quantizeIntRtn(w: Float32Array, rows: number, cols: number, options: RtnOptions): IntQuantResult {
  const tensor = options.name ?? "weight";
  validateIntOptions(tensor, w, rows, cols, options);
  if (options.clip !== "minmax" && options.clip !== "mse")
    throw new IntQuantInputError({ tensor, reason: `clip must be "minmax" or "mse", got ${String(options.clip)}` });
  const mse: Required<MseClipOptions> = {
    grid: options.mse?.grid ?? 100,
    maxShrink: options.mse?.maxShrink ?? 0.8,
    norm: options.mse?.norm ?? 2.4,
    patience: options.mse?.patience ?? Number.POSITIVE_INFINITY,
  };
  if (!(mse.grid >= 1 && mse.maxShrink > 0 && mse.maxShrink < 1 && mse.norm > 0 && mse.patience >= 1))
    throw new IntQuantInputError({ tensor, reason: `invalid mse options ${JSON.stringify(options.mse)}` });
  const { bits, symmetric } = options;
  const scaleDtype = options.scaleDtype ?? "f32";
  const g = options.groupSize === -1 ? cols : options.groupSize;
  const nG = groupCount(cols, options.groupSize);
  const maxq = maxCode(bits);
  const codes = new Uint8Array(rows * cols);
  const dequant = new Float32Array(rows * cols);
  const scales = new Float32Array(rows * nG);
  const zeros = new Int32Array(rows * nG);
  const gIdx = new Int32Array(cols);
  for (let c = 0; c < cols; c++) gIdx[c] = Math.floor(c / g);
  for (let r = 0; r < rows; r++)
    for (let gi = 0; gi < nG; gi++) {
      const start = r * cols + gi * g;
      const len = Math.min(g, cols - gi * g);
      const { xmin, xmax } = minMaxRange(w, start, len, symmetric);
      const minmax = paramsFromRange(xmin, xmax, bits, symmetric, scaleDtype);
      // mse candidates only shrink the range, so a finite min/max scale bounds them all
      if (!Number.isFinite(minmax.scale))
        throw new IntQuantInputError({
          tensor,
          reason: `row ${r} group ${gi}: scale ${(xmax - xmin) / maxq} overflows ${scaleDtype} (range [${xmin}, ${xmax}])`,
        });
      const { scale, zero } =
        options.clip === "mse" ? mseParams(w, start, len, xmin, xmax, bits, symmetric, scaleDtype, mse) : minmax;
      scales[r * nG + gi] = scale;
      zeros[r * nG + gi] = zero;
      for (let j = start; j < start + len; j++) {
        const code = quantCode(w[j], scale, zero, maxq);
        codes[j] = code;
        dequant[j] = intDequantValue(code, zero, scale);
      }
    }
  return { codes, scales, zeros, gIdx, dequant, bits, groupSize: options.groupSize, symmetric };
}

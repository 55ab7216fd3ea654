// GPTQ over the native kernel (native/src/gptq.cc, f64, off the event loop).
// Hessian normalisation: GPTQ's convention is H = 2/n·Σ xxᵀ. The calibrator accumulates the raw
// weighted sum S = Σ_t w_t·x_t·x_tᵀ (native hessianAccumulate); pass it with
// `hessianWeight: Σ_t w_t` and it is rescaled to 2·S/Σw before quantization, so the reported loss
// is in the same units as the oracle's. Without hessianWeight, h is used as given.
// options.scaleDtype rounds each group's scale to the checkpoint's scale dtype inside the kernel,
// before codes and error feedback, so the returned scales are exact in it and dequant is bit for
// bit f32((code − zero)·scale).
import { native } from "@moeq/native";
import {
  GptqNumericalError,
  IntQuantInputError,
  type IntQuantOptions,
  type IntQuantResult,
  validateIntOptions,
} from "./int.ts";

export interface GptqOptions extends IntQuantOptions {
  actOrder: boolean;
  /** fraction of mean(diag H) added to the diagonal (default 0.01) */
  damp?: number;
  /** columns per lazy-update block (default 128) */
  blockSize?: number;
  /** Σ of token weights when h is a raw accumulated sum (see above) */
  hessianWeight?: number;
  /** the kernel to run (default the CPU one; deviceKernels(cuda).gptqQuantize runs it on a GPU) */
  kernel?: typeof native.gptqQuantize;
}

export interface GptqResult extends IntQuantResult {
  perm: Int32Array;
  /** proxy loss tr((W−Q)·H·(W−Q)ᵀ), H in GPTQ's convention when hessianWeight is given */
  loss: number;
}

export async function gptq(
  w: Float32Array,
  rows: number,
  cols: number,
  h: Float32Array | Float64Array,
  options: GptqOptions,
): Promise<GptqResult> {
  const tensor = options.name ?? "weight";
  validateIntOptions(tensor, w, rows, cols, options);
  const fail = (reason: string): never => {
    throw new IntQuantInputError({ tensor, reason });
  };
  if (!(h instanceof Float32Array || h instanceof Float64Array)) fail("hessian must be a Float32Array or Float64Array");
  if (h.length !== cols * cols) fail(`hessian has ${h.length} values, [${cols}, ${cols}] needs ${cols * cols}`);
  const damp = options.damp ?? 0.01;
  const blockSize = options.blockSize ?? 128;
  if (!(Number.isFinite(damp) && damp >= 0)) fail(`damp must be finite and >= 0, got ${damp}`);
  if (!(Number.isInteger(blockSize) && blockSize > 0)) fail(`blockSize must be a positive integer, got ${blockSize}`);
  let hessian = h;
  if (options.hessianWeight !== undefined) {
    const total = options.hessianWeight;
    if (!(Number.isFinite(total) && total > 0))
      fail(`hessianWeight must be > 0, got ${total} (no calibration tokens reached this weight: use RTN)`);
    const k = 2 / total;
    hessian = Float64Array.from(h, (v) => v * k);
  }
  for (let i = 0; i < hessian.length; i++)
    if (!Number.isFinite(hessian[i])) fail(`hessian[${Math.floor(i / cols)}, ${i % cols}] is ${hessian[i]}`);
  let res: Awaited<ReturnType<typeof native.gptqQuantize>>;
  try {
    res = await (options.kernel ?? native.gptqQuantize)(
      w,
      rows,
      cols,
      hessian,
      options.bits,
      options.groupSize,
      options.symmetric,
      options.actOrder,
      damp,
      blockSize,
      options.scaleDtype ?? "f32",
    );
  } catch (e) {
    throw new GptqNumericalError({ tensor, reason: e instanceof Error ? e.message : String(e) });
  }
  return {
    codes: res.codes,
    scales: res.scales,
    zeros: res.zeros,
    gIdx: res.gIdx,
    perm: res.perm,
    dequant: res.dequant,
    loss: res.loss,
    bits: options.bits,
    groupSize: options.groupSize,
    symmetric: options.symmetric,
  };
}

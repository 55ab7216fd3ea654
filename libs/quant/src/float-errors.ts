import { Data } from "effect";

/** Input the float quantizers cannot handle: wrong length, shape not divisible by the block, non-finite values. */
export class FloatQuantInputError extends Data.TaggedError("FloatQuantInputError")<{ readonly message: string }> {}

/**
 * A static activation scale was asked for an expert (or module) whose calibration statistics
 * hold no tokens, and no fallback with a stated reason was given.
 */
export class MissingCalibrationError extends Data.TaggedError("MissingCalibrationError")<{
  readonly module: string;
  readonly message: string;
}> {}

export const checkMatrix = (w: ArrayLike<number>, rows: number, cols: number, name: string): void => {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0) {
    throw new FloatQuantInputError({ message: `${name}: shape [${rows}, ${cols}] must be positive integers` });
  }
  if (w.length !== rows * cols) {
    throw new FloatQuantInputError({
      message: `${name}: ${w.length} values do not fill shape [${rows}, ${cols}] (${rows * cols} expected)`,
    });
  }
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(w[i]!)) {
      const r = Math.floor(i / cols);
      throw new FloatQuantInputError({ message: `${name}: non-finite value ${w[i]} at [${r}, ${i - r * cols}]` });
    }
  }
};

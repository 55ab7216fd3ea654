// Static activation scales (W8A8-FP8, NVFP4 W4A4) from calibration ranges. An expert that saw
// no tokens has no range of its own; instead of the silent 1.0 other tools write, the caller
// must name where the value comes from, and that provenance travels to the report.

import { FP4_E2M1_MAX, FP8_E4M3_MAX } from "./float-codecs.ts";
import { MissingCalibrationError } from "./float-errors.ts";
import { type Nvfp4Convention, nvfp4GlobalScale } from "./nvfp4.ts";

/** What the calibration policy observed at a module's input. */
export interface ActivationRange {
  readonly tokens: number;
  readonly absmax: number;
}

export interface InputRangeFallback {
  readonly absmax: number;
  /** Said in the report, e.g. "max input absmax over the 8 experts of layer 3 (policy: routed)". */
  readonly reason: string;
}

export interface ResolvedInputRange {
  readonly absmax: number;
  readonly source: "calibration" | "fallback";
  readonly reason?: string;
}

const hasRange = (r: ActivationRange | undefined): boolean =>
  r !== undefined && r.tokens > 0 && Number.isFinite(r.absmax) && r.absmax > 0;

export const resolveInputRange = (
  module: string,
  range: ActivationRange | undefined,
  fallback?: InputRangeFallback,
): ResolvedInputRange => {
  if (range !== undefined && hasRange(range)) return { absmax: range.absmax, source: "calibration" };
  const why =
    range === undefined
      ? "has no calibration statistics"
      : range.tokens <= 0
        ? "saw no calibration tokens"
        : `has an unusable input absmax (${range.absmax})`;
  if (fallback === undefined) {
    throw new MissingCalibrationError({
      module,
      message: `${module} ${why}; give a fallback range with a reason (e.g. the layer's max over experts) or calibrate with a policy that reaches it`,
    });
  }
  if (!(Number.isFinite(fallback.absmax) && fallback.absmax > 0) || fallback.reason.trim() === "") {
    throw new MissingCalibrationError({
      module,
      message: `${module} ${why}, and its fallback (absmax ${fallback.absmax}, reason "${fallback.reason}") is not usable`,
    });
  }
  return { absmax: fallback.absmax, source: "fallback", reason: `${module} ${why}: ${fallback.reason}` };
};

export type ExpertFallbackPolicy = "error" | "layer-max" | InputRangeFallback;

/**
 * Resolve the input range of every expert of one layer. "layer-max" gives an expert without
 * tokens the largest absmax among its calibrated siblings (ModelOpt's default since PR #1380);
 * "error" refuses; an explicit fallback applies one stated value.
 */
export const resolveExpertInputRanges = (
  experts: ReadonlyMap<string, ActivationRange | undefined>,
  policy: ExpertFallbackPolicy,
): Map<string, ResolvedInputRange> => {
  let layerMax = 0;
  let calibrated = 0;
  for (const r of experts.values()) {
    if (r !== undefined && hasRange(r)) {
      layerMax = Math.max(layerMax, r.absmax);
      calibrated++;
    }
  }
  const out = new Map<string, ResolvedInputRange>();
  for (const [name, r] of experts) {
    let fb: InputRangeFallback | undefined;
    if (policy === "layer-max") {
      if (calibrated > 0) {
        fb = { absmax: layerMax, reason: `max input absmax over the ${calibrated} calibrated experts of its layer` };
      }
    } else if (policy !== "error") {
      fb = policy;
    }
    out.set(name, resolveInputRange(name, r, fb));
  }
  return out;
};

/** FP8 static per-tensor input scale: absmax / 448 (multiplies the e4m3 activation). */
export const inputScaleFp8 = (range: ResolvedInputRange): number =>
  Math.fround(Math.fround(range.absmax) / FP8_E4M3_MAX);

/**
 * NVFP4 activation tensor scale. compressed-tensors writes `input_global_scale` = 2688/absmax;
 * ModelOpt writes `input_scale` = absmax/2688.
 */
export const nvfp4InputScale = (range: ResolvedInputRange, convention: Nvfp4Convention): number =>
  nvfp4GlobalScale(range.absmax, convention);

export const NVFP4_INPUT_TWO_LEVEL_MAX = FP8_E4M3_MAX * FP4_E2M1_MAX;

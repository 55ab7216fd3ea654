// The report's data model: everything report.json stores and report.html draws. The pipeline
// fills it; matrices are indexed [layer][expert] and must be layers × experts.

import { ReportDataError } from "./errors.ts";
import type { KldStats } from "./kld.ts";
import type { LayerStats } from "./moeErrors.ts";

/** [layer][expert]; null marks "not measured" (drawn grey), distinct from 0. */
export type ExpertMatrix = (number | null)[][];

export interface ExpertMatrices {
  /** Calibration tokens routed to each expert. */
  readonly routedTokens: ExpertMatrix;
  /** Sum of calibration weights each expert's statistics received. */
  readonly calibWeightMass: ExpertMatrix;
  /** Relative weight error ‖W_q − W‖/‖W‖. */
  readonly weightRelError: ExpertMatrix;
  /** Relative output error on the expert's routed evaluation tokens. */
  readonly outputRelError: ExpertMatrix;
  /** Seconds spent quantizing each expert. */
  readonly seconds: ExpertMatrix;
}

export interface Coverage {
  /** Experts with fewer routed calibration tokens than this are counted as under-calibrated. */
  readonly minTokens: number;
  readonly expertsTotal: number;
  readonly expertsWithoutTokens: number;
  readonly expertsBelowMin: number;
  /** What the run did for them (e.g. "soft routing weights", "RTN fallback"). */
  readonly remedy?: string;
  /**
   * What calibrated each expert under the run's policy: the count calibrated on exactly their
   * routed tokens, and the experts (as `L<layer>.E<expert>`) blended with tokens the router did
   * not send them, or left without any calibration token (fallback).
   */
  readonly calibration?: {
    readonly routed: number;
    readonly blended: readonly string[];
    readonly fallback: readonly string[];
  };
}

export interface StageTiming {
  readonly stage: string;
  readonly seconds: number;
}

export interface ReportData {
  readonly title: string;
  /** ISO 8601 time the run finished. */
  readonly createdAt: string;
  readonly model: {
    readonly name: string;
    readonly layers: number;
    readonly experts: number;
    readonly topK?: number;
    readonly source?: string;
  };
  /** The run's settings as the user would quote them (method, bits, group, calib/eval spec, seed, …). */
  readonly settings: Readonly<Record<string, string | number | boolean | null>>;
  /** KLD statistics on the evaluation text; null when the run did not evaluate. */
  readonly kld: KldStats | null;
  readonly layers: readonly LayerStats[];
  readonly experts: ExpertMatrices;
  readonly coverage: Coverage | null;
  readonly timings: readonly StageTiming[];
}

export const MATRIX_FIELDS = [
  "routedTokens",
  "calibWeightMass",
  "weightRelError",
  "outputRelError",
  "seconds",
] as const;

/** Coverage summary from a routed-token matrix. */
export function coverageOf(routedTokens: ExpertMatrix, minTokens: number, remedy?: string): Coverage {
  let total = 0;
  let zero = 0;
  let below = 0;
  for (const row of routedTokens)
    for (const v of row) {
      total++;
      const t = v ?? 0;
      if (t === 0) zero++;
      if (t < minTokens) below++;
    }
  return {
    minTokens,
    expertsTotal: total,
    expertsWithoutTokens: zero,
    expertsBelowMin: below,
    ...(remedy ? { remedy } : {}),
  };
}

/** Check shapes and value types so the HTML never indexes past a matrix. */
export function validateReportData(data: ReportData): void {
  const { layers, experts } = data.model ?? ({} as ReportData["model"]);
  if (!Number.isSafeInteger(layers) || layers < 1)
    throw new ReportDataError({ field: "model.layers", reason: `must be a positive integer, got ${layers}` });
  if (!Number.isSafeInteger(experts) || experts < 1)
    throw new ReportDataError({ field: "model.experts", reason: `must be a positive integer, got ${experts}` });
  for (const name of MATRIX_FIELDS) {
    const m = data.experts?.[name];
    if (!Array.isArray(m) || m.length !== layers)
      throw new ReportDataError({
        field: `experts.${name}`,
        reason: `expected ${layers} rows (layers), got ${Array.isArray(m) ? m.length : typeof m}`,
      });
    m.forEach((row, l) => {
      if (!Array.isArray(row) || row.length !== experts)
        throw new ReportDataError({
          field: `experts.${name}[${l}]`,
          reason: `expected ${experts} values (experts), got ${Array.isArray(row) ? row.length : typeof row}`,
        });
      row.forEach((v, e) => {
        if (v !== null && typeof v !== "number")
          throw new ReportDataError({
            field: `experts.${name}[${l}][${e}]`,
            reason: `expected a number or null, got ${typeof v}`,
          });
      });
    });
  }
  data.layers.forEach((s, i) => {
    if (!Number.isSafeInteger(s.layer) || s.layer < 0 || s.layer >= layers)
      throw new ReportDataError({ field: `layers[${i}].layer`, reason: `${s.layer} outside 0..${layers - 1}` });
  });
  if (typeof data.settings !== "object" || data.settings === null)
    throw new ReportDataError({ field: "settings", reason: "expected an object" });
}

/**
 * The report sections that would render without a single value: "kld", "layers" (no measured MoE
 * output error), "experts.<field>" (every cell null: a grey heatmap), "settings", "timings".
 * An RTN run legitimately has no calibration (experts.routedTokens, experts.calibWeightMass);
 * anything else listed here is a section the report promises and does not show.
 */
export function emptySections(data: ReportData): string[] {
  const empty: string[] = [];
  if (!data.kld) empty.push("kld");
  if (!data.layers.some((s) => s.outputRelError !== null)) empty.push("layers");
  for (const f of MATRIX_FIELDS)
    if (!data.experts[f].some((row) => row.some((v) => v !== null && Number.isFinite(v)))) empty.push(`experts.${f}`);
  if (Object.keys(data.settings).length === 0) empty.push("settings");
  if (data.timings.length === 0) empty.push("timings");
  return empty;
}

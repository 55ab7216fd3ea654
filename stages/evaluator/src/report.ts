// report.json + report.html of a run (or of `moeq eval`): KLD, per-layer MoE output error,
// per-expert coverage / weight error / quantization time, settings and stage timings.
import { type ExpertStats, expertMatrix, type ReportData, type StageTiming, writeReport } from "@moeq/eval";
import { Cause, Effect, Exit } from "effect";
import type { Evaluation } from "./evaluate.ts";

export interface ExpertRunStats {
  readonly layer: number;
  readonly expert: number;
  readonly routedTokens: number;
  readonly calibWeightMass: number;
  readonly seconds: number;
  /** what calibrated the expert (RoutingPlanned coverage) */
  /** what the calibration policy did for the expert; absent without a calibration plan (RTN) */
  readonly calibration?: "routed" | "blended" | "fallback";
}

export interface ReportInput {
  readonly title: string;
  readonly modelName: string;
  readonly source: string;
  readonly layers: number;
  readonly experts: number;
  readonly topK?: number;
  readonly settings: Readonly<Record<string, string | number | boolean | null>>;
  readonly evaluation: Evaluation;
  readonly expertRuns?: readonly ExpertRunStats[];
  readonly timings?: readonly StageTiming[];
  readonly remedy?: string;
  /** routed tokens below which an expert counts as under-covered (default 1) */
  readonly minTokens?: number;
}

export function reportData(r: ReportInput): ReportData {
  const runs = new Map((r.expertRuns ?? []).map((s) => [`${s.layer}/${s.expert}`, s]));
  const werr = new Map(r.evaluation.expertWeightErrors.map((s) => [`${s.layer}/${s.expert}`, s.relError]));
  const oerr = new Map(r.evaluation.expertOutputErrors.map((s) => [`${s.layer}/${s.expert}`, s.relError]));
  const stats: ExpertStats[] = [];
  for (let L = 0; L < r.layers; L++)
    for (let e = 0; e < r.experts; e++) {
      const run = runs.get(`${L}/${e}`);
      const we = werr.get(`${L}/${e}`);
      const oe = oerr.get(`${L}/${e}`);
      if (!run && we === undefined && oe === undefined) continue;
      stats.push({
        layer: L,
        expert: e,
        routedTokens: run?.routedTokens ?? Number.NaN,
        calibWeightMass: run?.calibWeightMass ?? Number.NaN,
        weightRelError: we ?? null,
        outputRelError: oe ?? null,
        seconds: run?.seconds ?? Number.NaN,
      });
    }
  const m = (f: keyof ExpertStats) =>
    expertMatrix(r.layers, r.experts, stats, f).map((row) =>
      row.map((v) => (typeof v === "number" && Number.isNaN(v) ? null : v)),
    );
  const routed = m("routedTokens");
  let zero = 0;
  let total = 0;
  let below = 0;
  const minTokens = r.minTokens ?? 1;
  for (const row of routed) for (const v of row) if (v !== null) total++, v === 0 && zero++, v < minTokens && below++;
  return {
    title: r.title,
    createdAt: new Date().toISOString(),
    model: {
      name: r.modelName,
      layers: r.layers,
      experts: r.experts,
      ...(r.topK ? { topK: r.topK } : {}),
      source: r.source,
    },
    // the activation treatment belongs to the numbers: W8A8 scored weight-only is another model
    settings: { ...r.settings, activations: r.evaluation.activations.summary },
    kld: r.evaluation.kld,
    layers: r.evaluation.layers,
    experts: {
      routedTokens: routed,
      calibWeightMass: m("calibWeightMass"),
      weightRelError: m("weightRelError"),
      outputRelError: m("outputRelError"),
      seconds: m("seconds"),
    },
    coverage: r.expertRuns && total > 0
      ? {
          minTokens,
          expertsTotal: total,
          expertsWithoutTokens: zero,
          expertsBelowMin: below,
          ...(r.remedy ? { remedy: r.remedy } : {}),
          calibration: calibrationOf(r.expertRuns),
        }
      : null,
    timings: r.timings ?? [],
  };
}

function calibrationOf(runs: readonly ExpertRunStats[]) {
  const named = (k: ExpertRunStats["calibration"]) =>
    runs.filter((s) => s.calibration === k).map((s) => `L${s.layer}.E${s.expert}`);
  return { routed: named("routed").length, blended: named("blended"), fallback: named("fallback") };
}

export async function writeRunReport(dir: string, data: ReportData): Promise<string> {
  const exit = await Effect.runPromiseExit(writeReport(dir, data));
  if (Exit.isFailure(exit)) throw Cause.squash(exit.cause);
  return dir;
}

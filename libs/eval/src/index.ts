// @moeq/eval: KL-divergence statistics as llama.cpp reports them, per-layer / per-expert error
// aggregates, and the run report (report.json + self-contained report.html).
export { EvalInputError, ReportDataError, ReportWriteError } from "./errors.ts";
export {
  type DeltaPStats,
  KldAccumulator,
  type KldDistribution,
  type KldHistogram,
  type KldStats,
  meanAndUncertainty,
  meanCovariance,
  type PerplexityStats,
  percentileSorted,
  scoreTokens,
  type TokenScores,
  type ValueWithUncertainty,
} from "./kld.ts";
export { formatKldTable } from "./kldTable.ts";
export { type ExpertStats, expertMatrix, type LayerStats, RelativeErrorAccumulator } from "./moeErrors.ts";
export {
  type Coverage,
  coverageOf,
  type ExpertMatrices,
  type ExpertMatrix,
  emptySections,
  MATRIX_FIELDS,
  type ReportData,
  type StageTiming,
  validateReportData,
} from "./reportData.ts";
export { renderReportHtml, reportJson } from "./reportHtml.ts";
export { type WrittenReport, writeReport } from "./writeReport.ts";

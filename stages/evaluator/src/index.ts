export { type EvaluateOptions, type Evaluation, type ExpertWeightError, evaluateCheckpoint } from "./evaluate.ts";
export { runEvaluator } from "./evaluator.ts";
export { type ExpertRunStats, type ReportInput, reportData, writeRunReport } from "./report.ts";

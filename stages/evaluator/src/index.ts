export {
  type ActivationMode,
  type ActivationPlan,
  ActivationPlanError,
  type ActivationTreatment,
  activationModes,
  applyInputQuantization,
  combineInputQuantization,
  type ExpertInputScales,
  expertInputScaleModes,
  planActivations,
} from "./activations.ts";
export { type EvaluateOptions, type Evaluation, type ExpertWeightError, evaluateCheckpoint } from "./evaluate.ts";
export { runEvaluator } from "./evaluator.ts";
export { type ExpertRunStats, type ReportInput, reportData, writeRunReport } from "./report.ts";

export { writePolicyCheckpoint } from "./checkpoint.ts";
export { type CollectInput, collectAndQuantize, type PolicyRun, type QuantSettings } from "./collect.ts";
export { StudyOptionsError } from "./errors.ts";
export { type CalibSize, calibSpec, parseCalibSizes, parsePolicyList } from "./grid.ts";
export { runStudy, type StudyCell, type StudyOptions, type StudyResult } from "./study.ts";
export { formatStudyMarkdown } from "./table.ts";

export * from "./errors.ts";
export * from "./events.ts";
export * from "./options.ts";
export * from "./run-dir.ts";
export * from "./stage.ts";
export * from "./tensors.ts";
export * from "./windows.ts";
export * from "./targets.ts";
export * from "./quantized.ts";
export * from "./target-weights.ts";
// Stages instrument their work with these helpers (one import for every stage package).
export * as telemetry from "@moeq/telemetry";
export * from "./schemes.ts";

// Stages instrument their work with these helpers (one import for every stage package).
export * as telemetry from "@moeq/telemetry";
export * from "./errors.ts";
export * from "./events.ts";
export * from "./options.ts";
export * from "./quantized.ts";
export * from "./run-dir.ts";
export * from "./schemes.ts";
export * from "./stage.ts";
export * from "./target-weights.ts";
export * from "./targets.ts";
export * from "./tensors.ts";
export * from "./windows.ts";

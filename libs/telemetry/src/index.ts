export * from "./attributes.ts";
export * from "./config.ts";
export * from "./effect.ts";
export * from "./errors.ts";
export { type OtlpJsonRequest, otlpJsonLine, toOtlpJson } from "./otlp-json.ts";
export * from "./propagation.ts";
export * from "./spans.ts";
export {
  activeTelemetry,
  INSTRUMENTATION_SCOPE,
  type InitTelemetryOptions,
  initTelemetry,
  type Telemetry,
} from "./telemetry.ts";
export { TraceFileExporter } from "./trace-file-exporter.ts";
export * from "./trace-file-reader.ts";

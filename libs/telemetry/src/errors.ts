import { Data } from "effect";

/** A tracing setting (environment variable or option) that cannot be used; `setting` names it. */
export class TelemetryConfigInvalid extends Data.TaggedError("TelemetryConfigInvalid")<{
  readonly setting: string;
  readonly message: string;
}> {}

/** initTelemetry while another Telemetry of this process is still running (OTel globals are per process). */
export class TelemetryAlreadyActive extends Data.TaggedError("TelemetryAlreadyActive")<{
  readonly message: string;
}> {}

/** A trace file line that is not an OTLP JSON ExportTraceServiceRequest; names the file and line. */
export class TraceFileInvalid extends Data.TaggedError("TraceFileInvalid")<{
  readonly file: string;
  readonly line: number;
  readonly message: string;
}> {}

export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

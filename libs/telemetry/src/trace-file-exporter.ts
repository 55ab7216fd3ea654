// `--trace-file`: every export appends one OTLP/JSON ExportTraceServiceRequest as one line. The
// file is opened O_APPEND and each batch goes out in a single write(2), so several stage processes
// may share one file (Linux appends each write whole) and a crash loses at most unexported spans.
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { type ExportResult, ExportResultCode } from "@opentelemetry/core";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import { errorText, TelemetryConfigInvalid } from "./errors.ts";
import { otlpJsonLine } from "./otlp-json.ts";

export class TraceFileExporter implements SpanExporter {
  readonly path: string;
  private fd: number | undefined;

  constructor(path: string) {
    this.path = path;
    try {
      this.fd = openSync(path, "a", 0o644);
    } catch (e) {
      throw new TelemetryConfigInvalid({
        setting: "--trace-file",
        message: `cannot open trace file ${path}: ${errorText(e)}`,
      });
    }
  }

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    if (this.fd === undefined) {
      done({ code: ExportResultCode.FAILED, error: new Error(`trace file ${this.path} is closed`) });
      return;
    }
    if (spans.length === 0) {
      done({ code: ExportResultCode.SUCCESS });
      return;
    }
    try {
      const bytes = Buffer.from(`${otlpJsonLine(spans)}\n`);
      let off = 0;
      while (off < bytes.length) off += writeSync(this.fd, bytes, off);
      done({ code: ExportResultCode.SUCCESS });
    } catch (e) {
      done({ code: ExportResultCode.FAILED, error: e instanceof Error ? e : new Error(String(e)) });
    }
  }

  // Every export is already written (writeSync): readers see it. fsync, which made flushes cost
  // ~0.3 s CPU per run in the profile, is left to shutdown, where the file is closed.
  async forceFlush(): Promise<void> {}

  async shutdown(): Promise<void> {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    fsyncSync(fd);
    closeSync(fd);
  }
}

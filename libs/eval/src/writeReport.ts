// Writes report.json and report.html into a directory: both are first written to a fresh
// temporary directory beside them and then renamed into place, so a reader never sees a
// half-written report.
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Effect } from "effect";
import { ReportDataError, ReportWriteError } from "./errors.ts";
import { type ReportData, validateReportData } from "./reportData.ts";
import { renderReportHtml, reportJson } from "./reportHtml.ts";

export interface WrittenReport {
  readonly json: string;
  readonly html: string;
}

export function writeReport(
  dir: string,
  data: ReportData,
): Effect.Effect<WrittenReport, ReportDataError | ReportWriteError> {
  return Effect.try({
    try: () => {
      validateReportData(data);
      const json = reportJson(data);
      const html = renderReportHtml(data);
      let tmp: string | undefined;
      try {
        mkdirSync(dir, { recursive: true });
        tmp = mkdtempSync(join(dir, ".report-"));
        writeFileSync(join(tmp, "report.json"), json);
        writeFileSync(join(tmp, "report.html"), html);
        renameSync(join(tmp, "report.json"), join(dir, "report.json"));
        renameSync(join(tmp, "report.html"), join(dir, "report.html"));
      } catch (e) {
        throw new ReportWriteError({ path: dir, reason: (e as Error).message });
      } finally {
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
      return { json: join(dir, "report.json"), html: join(dir, "report.html") };
    },
    catch: (e) =>
      e instanceof ReportDataError || e instanceof ReportWriteError
        ? e
        : new ReportWriteError({ path: dir, reason: String(e) }),
  });
}

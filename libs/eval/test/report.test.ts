import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import {
  coverageOf,
  emptySections,
  type ReportData,
  ReportDataError,
  renderReportHtml,
  writeReport,
} from "../src/index.ts";
import { sampleReport } from "./sampleReport.ts";

const tmp = () => mkdtempSync(join(tmpdir(), "moeq-report-"));

describe("writeReport", () => {
  it("writes report.json with the same data and a self-contained report.html", () => {
    const dir = join(tmp(), "out");
    const data = sampleReport();
    const written = Effect.runSync(writeReport(dir, data));
    expect(written).toEqual({ json: join(dir, "report.json"), html: join(dir, "report.html") });
    expect(readdirSync(dir).sort()).toEqual(["report.html", "report.json"]); // temp dir removed

    const json = JSON.parse(readFileSync(written.json, "utf8"));
    expect(json.model).toEqual(data.model);
    expect(json.experts.routedTokens).toEqual(data.experts.routedTokens);
    expect(json.kld.kld.mean).toBe(data.kld!.kld.mean);
    expect(json.settings.policy).toBe('soft <routing> & "weights"');

    const html = readFileSync(written.html, "utf8");
    expect(html).not.toMatch(/\b(?:src|href)\s*=/i); // nothing fetched: no external or relative resources
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/@import|url\((?!#)/);
    expect(html).toContain("soft &#60;routing&#62; &#38; &#34;weights&#34;");
    expect(html.match(/<svg class="heatmap"/g)?.length).toBe(5);
    expect(html.match(/<rect class="cell"/g)?.length).toBe(5 * 4 * 32);
    // embedded data cannot close its <script>
    const embedded = /<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html)![1];
    expect(JSON.parse(embedded).model.experts).toBe(32);
  });

  it("says per expert what calibrated it (routed / blended / fallback)", () => {
    const dir = tmp();
    const base = sampleReport(2, 3);
    const data: ReportData = {
      ...base,
      coverage: { ...base.coverage!, calibration: { routed: 4, blended: ["L0.E1"], fallback: ["L1.E2"] } },
    };
    Effect.runSync(writeReport(dir, data));
    expect(JSON.parse(readFileSync(join(dir, "report.json"), "utf8")).coverage.calibration).toEqual({
      routed: 4,
      blended: ["L0.E1"],
      fallback: ["L1.E2"],
    });
    expect(readFileSync(join(dir, "report.html"), "utf8")).toContain(
      "Calibration per expert under the policy: 4 on exactly their routed tokens; 1 blended with tokens the router did not send them: L0.E1; 1 without calibration tokens (fallback): L1.E2.",
    );
  });

  it("replaces an existing report and writes non-finite numbers as null", () => {
    const dir = tmp();
    writeFileSync(join(dir, "report.json"), "old");
    const data: ReportData = { ...sampleReport(2, 3), layers: [{ layer: 1, outputRelError: Number.NaN, tokens: 0 }] };
    Effect.runSync(writeReport(dir, data));
    const json = JSON.parse(readFileSync(join(dir, "report.json"), "utf8"));
    expect(json.layers[0].outputRelError).toBeNull();
  });

  it("rejects matrices that are not layers × experts, naming the field", () => {
    const dir = tmp();
    const good = sampleReport(2, 3);
    const cases: [ReportData, string][] = [
      [{ ...good, experts: { ...good.experts, seconds: [[1, 2, 3]] } }, "experts.seconds"],
      [
        {
          ...good,
          experts: {
            ...good.experts,
            routedTokens: [
              [1, 2, 3],
              [1, 2],
            ],
          },
        },
        "experts.routedTokens[1]",
      ],
      [
        {
          ...good,
          experts: {
            ...good.experts,
            weightRelError: [
              [1, 2, "x" as unknown as number],
              [1, 2, 3],
            ],
          },
        },
        "experts.weightRelError[0][2]",
      ],
      [{ ...good, model: { ...good.model, experts: 0 } }, "model.experts"],
      [{ ...good, layers: [{ layer: 5, outputRelError: 0, tokens: 1 }] }, "layers[0].layer"],
    ];
    for (const [data, field] of cases) {
      const err = Effect.runSync(Effect.flip(writeReport(dir, data)));
      expect(err).toBeInstanceOf(ReportDataError);
      expect((err as ReportDataError).field).toBe(field);
    }
    expect(existsSync(join(dir, "report.html"))).toBe(false);
  });

  it("reports a write failure as a typed error naming the directory", () => {
    const file = join(tmp(), "not-a-dir");
    writeFileSync(file, "x");
    const err = Effect.runSync(Effect.flip(writeReport(join(file, "sub"), sampleReport(1, 2))));
    expect(err._tag).toBe("ReportWriteError");
    expect(err.message).toContain(join(file, "sub"));
  });
});

describe("coverageOf", () => {
  it("counts experts without and below a minimum of routed tokens", () => {
    expect(
      coverageOf(
        [
          [0, 5, 100],
          [null, 64, 63],
        ],
        64,
      ),
    ).toEqual({
      minTokens: 64,
      expertsTotal: 6,
      expertsWithoutTokens: 2,
      expertsBelowMin: 4,
    });
  });
});

describe("emptySections", () => {
  it("a full report has none; a grey heatmap, no layer error or no timings is named", () => {
    const full = sampleReport(2, 4);
    expect(emptySections(full)).toEqual([]);
    const nulls = full.experts.outputRelError.map((row) => row.map(() => null));
    const empty: ReportData = {
      ...full,
      experts: { ...full.experts, outputRelError: nulls },
      layers: full.layers.map((l) => ({ ...l, outputRelError: null })),
      timings: [],
    };
    expect(emptySections(empty)).toEqual(["layers", "experts.outputRelError", "timings"]);
  });

  it("the HTML says under a map's title that it was not measured, and why", () => {
    const full = sampleReport(2, 4);
    const nulls = full.experts.routedTokens.map((row) => row.map(() => null));
    const html = renderReportHtml({ ...full, experts: { ...full.experts, routedTokens: nulls } });
    expect(html).toContain("Not measured in this run: no calibration pass (RTN, or moeq eval of a checkpoint).");
    expect(renderReportHtml(full)).not.toContain("Not measured in this run");
  });
});

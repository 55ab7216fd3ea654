// Opens report.html in headless Chromium (the Debian package; infra/toolchain.sh installs it)
// and checks what a reader would see: no console errors, no network access, one heatmap cell
// per layer × expert, and a screenshot.
import { statSync } from "node:fs";
import { join } from "node:path";
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { writeReport } from "../src/index.ts";
import { tempWork, withReportPage } from "./report-browser.ts";
import { sampleReport } from "./sampleReport.ts";

describe("report.html in Chromium", () => {
  it("renders without console errors, offline, with layers × experts cells per heatmap", {
    timeout: 60_000,
  }, async () => {
    const work = tempWork("browser");
    const data = sampleReport(4, 32);
    const { html } = Effect.runSync(writeReport(join(work, "report"), data));

    await withReportPage(html, work, async ({ page, problems, requests, heatmapCells }) => {
      expect(problems).toEqual([]);
      expect(requests.filter((u) => !u.startsWith("file:"))).toEqual([]);

      const counts = await heatmapCells();
      expect(counts.map((c) => c.id)).toEqual(["heat-routed", "heat-mass", "heat-werr", "heat-oerr", "heat-time"]);
      for (const c of counts) expect(c.cells, c.id).toBe(data.model.layers * data.model.experts);
      // The script ran and read the embedded data.
      expect(await page.textContent("#cells-note")).toBe("4 layers × 32 experts per heatmap");
      // Hovering a cell shows its value.
      await page.hover("#heat-routed rect.cell >> nth=5");
      expect(await page.textContent("#readout")).toMatch(/^layer 0, expert 5: /);

      const shot = join(work, "report.png");
      await page.screenshot({ path: shot, fullPage: true });
      expect(statSync(shot).size).toBeGreaterThan(10_000);
      if (process.env.MOEQ_SCREENSHOT_COPY)
        await page.screenshot({ path: process.env.MOEQ_SCREENSHOT_COPY, fullPage: true });
      expect(problems).toEqual([]);
    });
  });
});

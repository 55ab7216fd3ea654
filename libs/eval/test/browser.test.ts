// Opens report.html in headless Chromium (the Debian package; infra/toolchain.sh installs it)
// and checks what a reader would see: no console errors, no network access, one heatmap cell
// per layer × expert, and a screenshot.
import { existsSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Effect } from "effect";
import { chromium } from "playwright-core";
import { describe, expect, it } from "vitest";
import { writeReport } from "../src/index.ts";
import { sampleReport } from "./sampleReport.ts";

const CHROMIUM = "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

describe("report.html in Chromium", () => {
  it("renders without console errors, offline, with layers × experts cells per heatmap", {
    timeout: 60_000,
  }, async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} missing: run bash infra/toolchain.sh`).toBe(true);
    const work = mkdtempSync(join(tmpdir(), "moeq-browser-"));
    const data = sampleReport(4, 32);
    const { html } = Effect.runSync(writeReport(join(work, "report"), data));

    const context = await chromium.launchPersistentContext(join(work, "profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: { width: 1440, height: 900 },
    });
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      const requests: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(`console: ${m.text()}`);
      });
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      await page.route("**/*", (route) => {
        const url = route.request().url();
        requests.push(url);
        return url.startsWith("file:") ? route.continue() : route.abort();
      });
      await page.goto(pathToFileURL(html).href, { waitUntil: "load" });

      expect(problems).toEqual([]);
      expect(requests.filter((u) => !u.startsWith("file:"))).toEqual([]);

      const counts = await page.$$eval("svg.heatmap", (svgs) =>
        svgs.map((s) => ({ id: s.id, cells: s.querySelectorAll("rect.cell").length })),
      );
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
    } finally {
      await context.close();
    }
  });
});

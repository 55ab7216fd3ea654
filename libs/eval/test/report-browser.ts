// Opening a report.html in headless Chromium (the Debian package; infra/toolchain.sh installs
// it), offline: what the browser test here and the pipeline's e2e test both check.
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

export interface ReportPage {
  readonly page: Page;
  /** console errors and uncaught page errors so far */
  readonly problems: string[];
  /** every URL the page asked for (non-file ones are aborted) */
  readonly requests: string[];
  /** cells per heatmap, in page order */
  heatmapCells(): Promise<{ id: string; cells: number }[]>;
}

/** Opens `html` in a fresh profile under `workDir`, runs `check`, closes the browser. */
export async function withReportPage<T>(
  html: string,
  workDir: string,
  check: (r: ReportPage) => Promise<T>,
): Promise<T> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: run bash infra/toolchain.sh`);
  const context = await chromium.launchPersistentContext(mkdtempSync(join(workDir, "profile-")), {
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
    const heatmapCells = () =>
      page.$$eval("svg.heatmap", (svgs) =>
        svgs.map((s) => ({ id: s.id, cells: s.querySelectorAll("rect.cell").length })),
      );
    return await check({ page, problems, requests, heatmapCells });
  } finally {
    await context.close();
  }
}

export const tempWork = (name: string) => mkdtempSync(join(tmpdir(), `moeq-${name}-`));

// The quality bar on the trained model: W4 g32 symmetric, experts only, evaluated on
// 64 held-out Brown windows × 256 tokens. RTN must land in [0.040, 0.058] (PyTorch reference
// 0.0487); routed GPTQ must be ≥ 10 % lower; `moeq eval` must reproduce the run's numbers. The RTN
// run's report.html must render in headless Chromium (issue #10's done-when on the trained model).
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { emptySections, type ReportData } from "@moeq/eval";
import { describe, expect, it } from "vitest";
import { withReportPage } from "../libs/eval/test/report-browser.ts";
import { meanKld, moeq, tempDir, trainedModel } from "./helpers.ts";

describe("quality on the trained tiny Qwen3-MoE", () => {
  const dir = tempDir("quality");
  let rtn = Number.NaN;

  it("RTN W4 g32 sym: mean KLD in [0.040, 0.058]", async () => {
    const r = await moeq(
      ["quantize", trainedModel, "--out", join(dir, "rtn"), "--algo", "rtn", "--group-size", "32", "--json"],
      1_800_000,
    );
    expect(r.code, r.stderr).toBe(0);
    rtn = meanKld(r.stdout);
    expect(rtn).toBeGreaterThanOrEqual(0.04);
    expect(rtn).toBeLessThanOrEqual(0.058);
    expect(existsSync(join(dir, "rtn.moeq-work", "report", "report.html"))).toBe(true);
  }, 1_800_000);

  it("the RTN run's report.html renders in headless Chromium: no console errors, layers × experts cells, a screenshot", async () => {
    const html = join(dir, "rtn.moeq-work", "report", "report.html");
    expect(existsSync(html), "the RTN run wrote no report").toBe(true);
    const cfg = JSON.parse(readFileSync(join(trainedModel, "config.json"), "utf8")) as {
      num_hidden_layers: number;
      num_local_experts?: number;
      num_experts?: number;
    };
    const layers = cfg.num_hidden_layers;
    const experts = cfg.num_local_experts ?? cfg.num_experts ?? 0;
    const shot = join(dir, "trained-report.png");
    await withReportPage(html, dir, async ({ page, problems, requests, heatmapCells }) => {
      const cells = await heatmapCells();
      expect(cells.map((c) => c.id)).toEqual(["heat-routed", "heat-mass", "heat-werr", "heat-oerr", "heat-time"]);
      for (const c of cells) expect(c.cells, c.id).toBe(layers * experts);
      expect(await page.textContent("#cells-note")).toBe(`${layers} layers × ${experts} experts per heatmap`);
      await page.hover("#heat-werr rect.cell >> nth=33");
      expect(await page.textContent("#readout")).toMatch(/^layer 1, expert 1: /);
      await page.screenshot({ path: shot, fullPage: true });
      expect(problems).toEqual([]);
      expect(requests.filter((u) => !u.startsWith("file:"))).toEqual([]);
    });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
  }, 120_000);

  it("routed GPTQ (16×256 calibration tokens) is at least 10 % below RTN, and moeq eval reproduces it", async () => {
    const out = join(dir, "gptq");
    const r = await moeq(
      [
        "quantize",
        trainedModel,
        "--out",
        out,
        "--algo",
        "gptq",
        "--group-size",
        "32",
        "--calib",
        "brown:16x256",
        "--policy",
        "routed",
        "--json",
      ],
      1_800_000,
    );
    expect(r.code, r.stderr).toBe(0);
    const gptq = meanKld(r.stdout);
    // the GPTQ run's report shows every section it promises: calibration maps, per-expert output
    // error on routed eval tokens, time per expert, stage timings (issue #25: grey maps, empty timings)
    const report = JSON.parse(readFileSync(join(`${out}.moeq-work`, "report", "report.json"), "utf8")) as ReportData;
    expect(emptySections(report)).toEqual([]);
    expect(report.timings.map((t) => t.stage).sort()).toEqual(
      ["calibrator", "evaluator", "loader", "packer", "quantizer", "router-override"].sort(),
    );
    expect(Number.isFinite(rtn)).toBe(true);
    expect(gptq).toBeLessThanOrEqual(0.9 * rtn);
    const e = await moeq(["eval", trainedModel, out, "--json"], 1_800_000);
    expect(e.code, e.stderr).toBe(0);
    const again = (JSON.parse(e.stdout) as { kld: { kld: { mean: number } } }).kld.kld.mean;
    expect(Math.abs(again - gptq)).toBeLessThan(1e-9);
  }, 3_600_000);
});

// `moeq quantize --scheme/--format` end to end, one run per checkpoint format on a synthesized
// 1-layer Qwen3-MoE (runs in parallel): the output reads back through its format's own reader to
// exactly the quantizer's dequantized weights (the files the quantizer stage wrote), and
// `moeq eval` on the output reproduces the run's mean KLD. Invalid scheme × format combinations
// fail before anything is written.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { readQuantizedCheckpoint } from "@moeq/formats";
import { beforeAll, describe, expect, it } from "vitest";
import { withReportPage } from "../libs/eval/test/report-browser.ts";
import { meanKld, moeq, tempDir } from "./helpers.ts";

// acts: how the evaluator quantizes the 96 expert modules' inputs, as each checkpoint states it
const runs = [
  { scheme: "nvfp4", format: "compressed-tensors", algo: "gptq", acts: "nvfp4" },
  { scheme: "w4a16", format: "gptq", algo: "gptq", acts: "none" },
  { scheme: "w8a16", format: "gptq-v2", algo: "rtn", acts: "none" },
  { scheme: "w8a8-fp8", format: "modelopt", algo: "gptq", acts: "fp8-tensor" },
  { scheme: "fp8-block", format: "fp8-block", algo: "rtn", acts: "fp8-token-group-128" },
  { scheme: "mxfp4", format: "gpt-oss-mxfp4", algo: "rtn", acts: "none" },
] as const;

const f32 = (path: string) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};
const i32 = (path: string) => {
  const b = readFileSync(path);
  return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};

/** What the quantizer stage measured for L.E.proj: its dequant file, or (code − zero)·scale for int. */
function quantizerWeight(quantDir: string, base: string, cols: number): Float32Array {
  if (existsSync(join(quantDir, `${base}.dequant`))) return f32(join(quantDir, `${base}.dequant`));
  const codes = readFileSync(join(quantDir, `${base}.codes`));
  const scales = f32(join(quantDir, `${base}.scales`));
  const zeros = i32(join(quantDir, `${base}.zeros`));
  const gIdx = i32(join(quantDir, `${base}.g_idx`));
  const rows = codes.length / cols;
  const nG = scales.length / rows;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++)
      out[r * cols + c] = scales[r * nG + gIdx[c]] * (codes[r * cols + c] - zeros[r * nG + gIdx[c]]);
  return out;
}

describe("moeq quantize --scheme/--format on a synthesized model", () => {
  const dir = tempDir("schemes");
  const model = join(dir, "model");
  const results = new Map<string, { code: number; stdout: string; stderr: string }>();

  beforeAll(async () => {
    const s = await moeq(["synth", "--arch", "qwen3_moe", "--preset", "tiny", "--layers", "1", "--out", model]);
    expect(s.code, s.stderr).toBe(0);
    await Promise.all(
      runs.map(async ({ scheme, format, algo }) => {
        const args = [
          "quantize",
          model,
          "--out",
          join(dir, format),
          "--scheme",
          scheme,
          "--format",
          format,
          "--algo",
          algo,
        ];
        const r = await moeq(
          // --keep-artifacts: the quantizer's outputs in the work dir are what the output must read back to
          [
            ...args,
            "--calib",
            "random:8x64",
            "--eval",
            "random:4x64",
            "--quantizers",
            "1",
            "--threads",
            "1",
            "--json",
            "--keep-artifacts",
          ],
          600_000,
        );
        results.set(format, r);
      }),
    );
  }, 900_000);

  it.each(runs)(
    "$scheme → $format: reads back to the quantizer's weights; moeq eval reproduces the run's KLD, activations $acts",
    async ({ scheme, format, acts }) => {
      const r = results.get(format)!;
      expect(r.code, r.stderr).toBe(0);
      const out = join(dir, format);
      const ck = readQuantizedCheckpoint(out);
      try {
        expect(ck.format).toBe(format);
        const quantDir = join(dir, `${format}.moeq-work`, "tensors", "quant");
        const mods = ck.quantizedModules.filter((m) => /\.experts\.\d+\./.test(m));
        expect(mods.length).toBe(1 * 32 * 3);
        for (const m of mods) {
          const [, L, E, proj] = /layers\.(\d+)\.mlp\.experts\.(\d+)\.(\w+)$/.exec(m)!;
          const d = ck.dequantize(m);
          const want = quantizerWeight(quantDir, `L${L}.E${E}.${proj}`, d.cols);
          expect(
            Buffer.from(d.weight.buffer, d.weight.byteOffset, d.weight.byteLength).equals(
              Buffer.from(want.buffer, want.byteOffset, want.byteLength),
            ),
            `${scheme} ${m}`,
          ).toBe(true);
        }
      } finally {
        ck.close();
      }
      const run = meanKld(r.stdout);
      const e = await moeq(["eval", model, out, "--texts", "random:4x64", "--json"], 300_000);
      expect(e.code, e.stderr).toBe(0);
      const ev = JSON.parse(e.stdout) as {
        kld: { kld: { mean: number } };
        activations: { mode: string; modules: Record<string, number> };
      };
      const again = ev.kld.kld.mean;
      expect(again).toBeGreaterThan(0);
      // the run's stages use --threads 1, moeq eval the machine's BLAS threads: summation order differs in the last bits,
      // and where activations are quantized a last-bit difference flips an occasional rounding (fp8-block: 1e-4 relative)
      expect(Math.abs(again - run)).toBeLessThan((acts === "none" ? 1e-5 : 1e-3) * run);
      expect(ev.activations.mode).toBe("quantized");
      expect(ev.activations.modules).toEqual({ [acts]: 96 });
      if (scheme === "w8a8-fp8") {
        // the same checkpoint scored as if it were W8A16: another number, and it says so
        const wo = await moeq(["eval", model, out, "--texts", "random:4x64", "--weights-only", "--json"], 300_000);
        expect(wo.code, wo.stderr).toBe(0);
        const w = JSON.parse(wo.stdout) as { kld: { kld: { mean: number } }; activations: { mode: string } };
        expect(w.activations.mode).toBe("weights-only");
        expect(Math.abs(w.kld.kld.mean - again)).toBeGreaterThan(0.01 * again);
      }
    },
    300_000,
  );

  it("the NVFP4 run's report.html renders in headless Chromium: no console errors, layers × experts cells, a screenshot", async () => {
    const html = join(dir, "compressed-tensors.moeq-work", "report", "report.html");
    const shot = join(dir, "report.png");
    await withReportPage(html, dir, async ({ page, problems, requests, heatmapCells }) => {
      const cells = await heatmapCells();
      expect(cells.length).toBeGreaterThanOrEqual(4);
      for (const c of cells) expect(c.cells, c.id).toBe(1 * 32);
      expect(await page.textContent("#cells-note")).toBe("1 layers × 32 experts per heatmap");
      expect(await page.content()).toContain("nvfp4");
      await page.screenshot({ path: shot, fullPage: true });
      if (process.env.MOEQ_SCREENSHOT_COPY)
        await page.screenshot({ path: process.env.MOEQ_SCREENSHOT_COPY, fullPage: true });
      expect(problems).toEqual([]);
      expect(requests.filter((u) => !u.startsWith("file:"))).toEqual([]);
    });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
  }, 120_000);

  it("refuses a scheme the format cannot store before writing anything", async () => {
    const out = join(dir, "bad");
    const r = await moeq(["quantize", model, "--out", out, "--scheme", "mxfp4", "--format", "gptq"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/gptq cannot store scheme mxfp4 \(formats for mxfp4: compressed-tensors, gpt-oss-mxfp4\)/);
    expect(existsSync(out) || existsSync(`${out}.moeq-work`)).toBe(false);
    expect(readdirSync(dir).some((f) => f.startsWith("bad"))).toBe(false);
  }, 60_000);
});

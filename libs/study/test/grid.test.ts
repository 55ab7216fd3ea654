import { describe, expect, it } from "vitest";
import { calibSpec, parseCalibSizes, parsePolicyList } from "../src/grid.ts";
import type { StudyResult } from "../src/study.ts";
import { formatStudyMarkdown } from "../src/table.ts";

describe("study grid options", () => {
  it("parses calibration sizes in order", () => {
    expect(parseCalibSizes("16x256, 128x256")).toEqual([
      { windows: 16, seqLen: 256, label: "16x256" },
      { windows: 128, seqLen: 256, label: "128x256" },
    ]);
    expect(calibSpec("brown", parseCalibSizes("16x256")[0])).toBe("brown:16x256");
    expect(calibSpec("data.jsonl:4x8", parseCalibSizes("2x64")[0])).toBe("data.jsonl:2x64");
  });

  it.each(["", "16", "16x", "0x256", "16x1", "16*256"])("rejects calib sizes %j naming the flag", (s) => {
    expect(() => parseCalibSizes(s)).toThrow(/--calib-sizes/);
  });

  it("accepts policy specs and the rtn baseline; rejects unknown and repeated ones naming the flag", () => {
    expect(parsePolicyList("rtn,routed,soft,fill:256,mix:0.3,external:/x/p.mjs")).toEqual([
      "rtn",
      "routed",
      "soft",
      "fill:256",
      "mix:0.3",
      "external:/x/p.mjs",
    ]);
    expect(() => parsePolicyList("routed,sofft")).toThrow(/--policies: unknown calibration policy "sofft"/);
    expect(() => parsePolicyList("routed,routed")).toThrow(/listed twice/);
    expect(parsePolicyList("rtn,default,topup:1024")).toEqual(["rtn", "default", "topup:1024"]);
    expect(() => parsePolicyList("default,topup")).toThrow(/--policies: topup \(topup\) is listed twice/);
    expect(() => parsePolicyList("mix:2")).toThrow(/--policies: policy mix:2/);
  });
});

describe("study table", () => {
  const cell = (policy: string, calib: string, mean: number) => ({
    policy,
    calib,
    calibTokens: 4096,
    kld: { mean, uncertainty: 0.001, p99: 0.3, max: 2 },
    sameTop: 0.85,
    perplexityRatio: 1.01,
    coverage:
      policy === "rtn"
        ? null
        : {
            layers: 4,
            experts: 128,
            unrouted: 8,
            belowMin: 20,
            uncalibrated: policy === "routed" ? 8 : 0,
            routedOnly: policy === "routed" ? 120 : 0,
            blended: policy === "routed" ? 0 : 128,
            minRouted: 0,
            minUsed: 0,
            minEss: 0,
            medianEss: 120,
          },
    rtnFallbacks: policy === "routed" ? 24 : 0,
    statistics:
      policy === "rtn" ? null : { seconds: policy === "routed" ? 2 : 3, rows: policy === "routed" ? 1000 : 1500 },
    seconds: 1,
  });
  const r: StudyResult = {
    model: "m",
    arch: "qwen3_moe",
    settings: {
      algorithm: "gptq",
      bits: 4,
      groupSize: 32,
      symmetric: true,
      calib: "brown",
      eval: "brown:16x256",
      zeroTokenFallback: "rtn",
    },
    evalTokens: 4080,
    minTokens: 256,
    cells: [
      cell("rtn", "-", 0.05),
      cell("routed", "16x256", 0.041),
      cell("soft", "16x256", 0.037),
      cell("routed", "128x256", 0.036),
      cell("soft", "128x256", 0.035),
    ],
    seconds: 1,
  };
  it("has a row per policy, rtn repeated under every size, the best mean per size in bold, then coverage", () => {
    const lines = formatStudyMarkdown(r).split("\n");
    expect(lines).toContain("| policy | 16x256: mean KLD | p99 | same-top | 128x256: mean KLD | p99 | same-top |");
    expect(lines).toContain("| rtn | 0.05000 ± 0.00100 | 0.3000 | 85.00% | 0.05000 ± 0.00100 | 0.3000 | 85.00% |");
    expect(lines).toContain(
      "| soft | **0.03700 ± 0.00100** | 0.3000 | 85.00% | **0.03500 ± 0.00100** | 0.3000 | 85.00% |",
    );
    expect(lines).toContain(
      "| routed | 8/128 → RTN, 20 below, ESS min 0.0, median 120 | 8/128 → RTN, 20 below, ESS min 0.0, median 120 |",
    );
    expect(lines.filter((l) => l.startsWith("| rtn |"))).toHaveLength(1);
    // statistics per policy, relative to routed's, and what calibrated the experts
    expect(lines).toContain(
      "| soft | 3.00 s (1.50×), 1500 rows (1.50×); 0 / 128 / 0 | 3.00 s (1.50×), 1500 rows (1.50×); 0 / 128 / 0 |",
    );
    expect(lines).toContain(
      "| routed | 2.00 s (1.00×), 1000 rows (1.00×); 120 / 0 / 8 | 2.00 s (1.00×), 1000 rows (1.00×); 120 / 0 / 8 |",
    );
  });
});

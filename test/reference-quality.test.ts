// Quality of every architecture against an independent reference (issue #25): for each of the
// tiny-random fixtures, libs/models/device/rtn_reference.py (transformers 5.17, no moeq code; run
// on the CPU, each original model's logits on the golden input checked against the fixture's
// CUDA-made golden.safetensors) quantized the routed experts RTN W4 g16 symmetric with bf16 scales
// and measured the mean KLD of the quantized model to the original on fixed token windows; its
// numbers are in libs/models/device/rtn-reference.json. Here `moeq quantize` (the same scheme; the run ends with
// its own evaluation of the packed checkpoint, read back through its format's decoder) must land
// within 2 % of that reference for every architecture, on the same windows (moeq's
// random:NxT evaluation windows at seed 0, which the JSON lists token by token). Every run's
// report must also show every section it promises (an RTN run has no calibration maps).
// One run per architecture, two at a time (each run is a supervisor, six stage processes and a
// nats-server on a 2-core machine); RTN needs no calibration data, so the calibration pass gets
// one tiny window.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { emptySections, type ReportData } from "@moeq/eval";
import { randomWindows } from "@moeq/runtime";
import { describe, expect, it } from "vitest";
import { moeq, root, shared, tempDir } from "./helpers.ts";

interface Reference {
  readonly transformers: string;
  readonly scheme: { readonly bits: number; readonly groupSize: number; readonly symmetric: boolean };
  readonly windows: { readonly n: number; readonly seqLen: number; readonly vocab: number; readonly ids: number[][] };
  readonly models: Record<
    string,
    {
      readonly goldenLogitsMaxRel: number;
      readonly meanKld: number;
      readonly tokens: number;
      readonly changedParameters: number;
      readonly changedOutsideExperts: string[];
    }
  >;
}

/** moeq's mean KLD must be within this fraction of the reference's. */
const TOLERANCE = 0.02;
/** Runs at once: enough to overlap one run's start-up with another's work. */
const CONCURRENT = 2;

const tinyRandom = join(shared, "fixtures", "tiny-random");
const reference = JSON.parse(
  readFileSync(join(root, "libs", "models", "device", "rtn-reference.json"), "utf8"),
) as Reference;
const fixtures = readdirSync(tinyRandom, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();
const work = tempDir("reference-quality");
const { n, seqLen } = reference.windows;

interface RunResult {
  readonly code: number | null;
  readonly stderr: string;
  readonly meanKld?: number;
  readonly tokens?: number;
  readonly report?: ReportData;
}

let active = 0;
const waiting: (() => void)[] = [];
async function limited<T>(f: () => Promise<T>): Promise<T> {
  if (active >= CONCURRENT) await new Promise<void>((r) => waiting.push(r));
  active++;
  try {
    return await f();
  } finally {
    active--;
    waiting.shift()?.();
  }
}

const runs = new Map<string, Promise<RunResult>>();
/** The architecture's run, started on first use (all are started by the first test). */
function run(arch: string): Promise<RunResult> {
  let p = runs.get(arch);
  if (!p) {
    p = limited(async () => {
      const r = await moeq([
        "quantize",
        join(tinyRandom, arch),
        "--out",
        join(work, arch),
        "--algo",
        "rtn",
        "--bits",
        String(reference.scheme.bits),
        "--group-size",
        String(reference.scheme.groupSize),
        "--targets",
        "experts",
        "--calib",
        "random:1x8",
        "--eval",
        `random:${n}x${seqLen}`,
        "--quantizers",
        "1",
        "--threads",
        "1",
        "--json",
      ]);
      if (r.code !== 0) return { code: r.code, stderr: r.stderr };
      try {
        const s = JSON.parse(r.stdout) as { kld: { kld: { mean: number }; tokens: number }; reportDir: string };
        const report = JSON.parse(readFileSync(join(s.reportDir, "report.json"), "utf8")) as ReportData;
        return { code: 0, stderr: r.stderr, meanKld: s.kld.kld.mean, tokens: s.kld.tokens, report };
      } catch (e) {
        // settled, never rejected: every run starts before its test awaits it
        return { code: null, stderr: `${(e as Error).message}\n${r.stdout.slice(-2000)}` };
      }
    });
    runs.set(arch, p);
  }
  return p;
}

describe("every architecture: moeq's RTN W4 g16 mean KLD within 2 % of transformers' (rtn_reference.py)", () => {
  it("the reference covers every fixture, on moeq's own evaluation windows, and changed only expert weights", () => {
    for (const a of fixtures) void run(a);
    expect(Object.keys(reference.models).sort()).toEqual(fixtures);
    expect(fixtures.length).toBeGreaterThanOrEqual(20);
    expect(reference.scheme.symmetric).toBe(true);
    // moeq's random:NxT evaluation windows for --seed 0 (libs/runtime/src/windows.ts)
    const w = randomWindows(n, seqLen, reference.windows.vocab, 1_000_003);
    expect(Array.from(w.ids)).toEqual(reference.windows.ids.flat());
    for (const [a, m] of Object.entries(reference.models)) {
      // the reference computed the fixture's own model (the goldens' 1e-5 agreement) ...
      expect(m.goldenLogitsMaxRel, a).toBeLessThan(1e-5);
      // ... and loaded the quantized weights (something changed) and nothing else
      expect(m.changedParameters, a).toBeGreaterThan(0);
      expect(m.changedOutsideExperts, a).toEqual([]);
      expect(m.tokens, a).toBe(n * (seqLen - 1));
    }
  });

  for (const arch of fixtures)
    it(`${arch}`, { timeout: 900_000 }, async () => {
      const r = await run(arch);
      expect(r.code, r.stderr.slice(-2000)).toBe(0);
      const want = reference.models[arch].meanKld;
      expect(r.tokens).toBe(n * (seqLen - 1));
      expect(Math.abs((r.meanKld ?? Number.NaN) / want - 1), `moeq ${r.meanKld} vs reference ${want}`).toBeLessThan(
        TOLERANCE,
      );
      // the report shows every section it promises; an RTN run has no calibration pass
      expect(emptySections(r.report!)).toEqual(["experts.routedTokens", "experts.calibWeightMass"]);
    });
});

// The accumulator against a direct, independent computation written plainly here: two-pass
// means/variances instead of running sums, probabilities by exp/Σexp, a sort-and-interpolate
// percentile, and hand-worked oracle values.
import { describe, expect, it } from "vitest";
import { EvalInputError, formatKldTable, KldAccumulator, type KldStats, percentileSorted } from "../src/index.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

interface Case {
  vocab: number;
  ref: Float32Array;
  q: Float32Array;
  targets: Int32Array;
}

function randomCase(rows: number, vocab: number, seed: number): Case {
  const r = rng(seed);
  const ref = new Float32Array(rows * vocab);
  const q = new Float32Array(rows * vocab);
  const targets = new Int32Array(rows);
  for (let t = 0; t < rows; t++) {
    const noise = t % 7 === 0 ? 1.5 : 0.2; // a heavier tail, as quantization produces
    for (let i = 0; i < vocab; i++) {
      const x = 3 * gaussian(r);
      ref[t * vocab + i] = x;
      q[t * vocab + i] = x + noise * gaussian(r);
    }
    targets[t] = Math.floor(r() * vocab);
  }
  return { vocab, ref, q, targets };
}

/** Everything computed the plain way. */
function direct(c: Case) {
  const rows = c.targets.length;
  const kl: number[] = [];
  const dp: number[] = [];
  const nll: number[] = [];
  const nllBase: number[] = [];
  let same = 0;
  for (let t = 0; t < rows; t++) {
    const a = Array.from(c.ref.subarray(t * c.vocab, (t + 1) * c.vocab));
    const b = Array.from(c.q.subarray(t * c.vocab, (t + 1) * c.vocab));
    const za = a.reduce((s, x) => s + Math.exp(x), 0);
    const zb = b.reduce((s, x) => s + Math.exp(x), 0);
    const p = a.map((x) => Math.exp(x) / za);
    const q = b.map((x) => Math.exp(x) / zb);
    kl.push(p.reduce((s, pi, i) => s + pi * Math.log(pi / q[i]), 0));
    if (a.indexOf(Math.max(...a)) === b.indexOf(Math.max(...b))) same++;
    const tok = c.targets[t];
    nll.push(-Math.log(q[tok]));
    nllBase.push(-Math.log(p[tok]));
    dp.push(q[tok] - p[tok]);
  }
  return { kl, dp, nll, nllBase, same, n: rows };
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
/** Standard error of the mean with the population variance over n−1, as llama.cpp reports it. */
const sem = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / xs.length / (xs.length - 1));
};
const covOfMeans = (a: number[], b: number[]) => {
  const ma = mean(a);
  const mb = mean(b);
  return a.reduce((s, x, i) => s + (x - ma) * (b[i] - mb), 0) / a.length / (a.length - 1);
};
function pct(xs: number[], f: number): number {
  const s = [...xs].sort((x, y) => x - y);
  const pos = f * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (pos - lo) * (s[hi] - s[lo]);
}
function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function accumulate(c: Case, batches: number[]): KldStats {
  const acc = new KldAccumulator();
  let at = 0;
  for (const rows of batches) {
    acc.add(
      c.ref.subarray(at * c.vocab, (at + rows) * c.vocab),
      c.q.subarray(at * c.vocab, (at + rows) * c.vocab),
      c.vocab,
      c.targets.subarray(at, at + rows),
    );
    at += rows;
  }
  return acc.finish();
}

const close = (actual: number, expected: number, rel = 1e-9) =>
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(rel * Math.max(1, Math.abs(expected)));

describe("KldAccumulator vs a direct computation on random logits", () => {
  for (const [rows, vocab, seed, batches] of [
    [200, 97, 1, [37, 50, 113]],
    [1001, 33, 2, [1001]],
    [12, 5, 3, [5, 7]],
  ] as [number, number, number, number[]][]) {
    it(`${rows} tokens × vocab ${vocab} in batches ${batches.join("+")}`, () => {
      const c = randomCase(rows, vocab, seed);
      const d = direct(c);
      const s = accumulate(c, batches);
      expect(s.tokens).toBe(rows);

      close(s.kld.mean, mean(d.kl));
      close(s.kld.uncertainty, sem(d.kl), 1e-7);
      close(s.kld.max, Math.max(...d.kl));
      close(s.kld.min, Math.min(...d.kl));
      close(s.kld.median, median(d.kl));
      for (const [key, f] of [
        ["p99_9", 0.999],
        ["p99", 0.99],
        ["p95", 0.95],
        ["p90", 0.9],
        ["p10", 0.1],
        ["p5", 0.05],
        ["p1", 0.01],
        ["p0_1", 0.001],
      ] as const)
        close(s.kld[key], pct(d.kl, f));

      const p = s.perplexity!;
      const lnQ = mean(d.nll);
      const lnB = mean(d.nllBase);
      const cov = covOfMeans(d.nll, d.nllBase);
      close(p.ppl.value, Math.exp(lnQ));
      close(p.ppl.uncertainty, Math.exp(lnQ) * sem(d.nll), 1e-7);
      close(p.pplBase.value, Math.exp(lnB));
      close(p.pplBase.uncertainty, Math.exp(lnB) * sem(d.nllBase), 1e-7);
      close(p.lnPplCorrelation, cov / (sem(d.nll) * sem(d.nllBase)), 1e-7);
      close(p.lnPplRatio.value, lnQ - lnB);
      const lnRatioUnc = Math.sqrt(sem(d.nll) ** 2 + sem(d.nllBase) ** 2 - 2 * cov);
      close(p.lnPplRatio.uncertainty, lnRatioUnc, 1e-6);
      close(p.pplRatio.value, Math.exp(lnQ - lnB));
      close(p.pplRatio.uncertainty, Math.exp(lnQ - lnB) * lnRatioUnc, 1e-6);
      close(p.pplDiff.value, Math.exp(lnQ) - Math.exp(lnB));
      const uQ = Math.exp(lnQ) * sem(d.nll);
      const uB = Math.exp(lnB) * sem(d.nllBase);
      close(p.pplDiff.uncertainty, Math.sqrt(uQ ** 2 + uB ** 2 - 2 * Math.exp(lnQ) * Math.exp(lnB) * cov), 1e-6);

      const dp = s.deltaP!;
      close(dp.mean, mean(d.dp));
      close(dp.uncertainty, sem(d.dp), 1e-6);
      close(dp.max, Math.max(...d.dp));
      close(dp.min, Math.min(...d.dp));
      close(dp.median, median(d.dp));
      for (const [key, f] of [
        ["p99_9", 0.999],
        ["p99", 0.99],
        ["p95", 0.95],
        ["p90", 0.9],
        ["p75", 0.75],
        ["p25", 0.25],
        ["p10", 0.1],
        ["p5", 0.05],
        ["p1", 0.01],
        ["p0_1", 0.001],
      ] as const)
        close(dp[key], pct(d.dp, f));
      const sq = d.dp.map((x) => x * x);
      close(dp.rms, Math.sqrt(mean(sq)));
      close(dp.rmsUncertainty, sem(sq) / (2 * Math.sqrt(mean(sq))), 1e-6);

      const same = d.same / rows;
      close(s.sameTop.value, same);
      close(s.sameTop.uncertainty, Math.sqrt((same * (1 - same)) / (rows - 1)));

      const h = s.kldHistogram;
      expect(h.below + h.counts.reduce((a, b) => a + b, 0)).toBe(rows);
      const inFirstDecade = d.kl.filter((x) => x >= 10 ** h.log10Edges[0] && x < 10 ** h.log10Edges[4]).length;
      expect(h.counts.slice(0, 4).reduce((a, b) => a + b, 0)).toBe(inFirstDecade);
    });
  }

  it("gives the same statistics when accumulators are merged", () => {
    const c = randomCase(150, 41, 9);
    const whole = accumulate(c, [150]);
    const a = new KldAccumulator();
    const b = new KldAccumulator();
    a.add(c.ref.subarray(0, 60 * 41), c.q.subarray(0, 60 * 41), 41, c.targets.subarray(0, 60));
    b.add(c.ref.subarray(60 * 41), c.q.subarray(60 * 41), 41, c.targets.subarray(60));
    a.merge(b);
    const merged = a.finish();
    expect(merged.tokens).toBe(150);
    close(merged.kld.mean, whole.kld.mean, 1e-12);
    close(merged.kld.p95, whole.kld.p95, 1e-12);
    close(merged.perplexity!.lnPplRatio.uncertainty, whole.perplexity!.lnPplRatio.uncertainty, 1e-9);
  });
});

describe("oracle values", () => {
  it("KLD of p = (½, ½) against q = (¼, ¾) is ½·ln(4/3); PPL and Δp from the target token", () => {
    const acc = new KldAccumulator();
    // Logits (0, 0) → p = (½, ½); (0, ln 3) → q = (¼, ¾); target token 1.
    acc.add(new Float32Array([0, 0]), new Float32Array([0, Math.log(3)]), 2, new Int32Array([1]));
    const s = acc.finish();
    close(s.kld.mean, 0.5 * Math.log(4 / 3), 1e-6);
    expect(s.kld.uncertainty).toBe(0); // n ≤ 10: llama.cpp reports no uncertainty
    close(s.perplexity!.ppl.value, 4 / 3, 1e-6);
    close(s.perplexity!.pplBase.value, 2, 1e-6);
    close(s.deltaP!.mean, 0.25, 1e-6);
    expect(s.sameTop.value).toBe(0); // argmax p is token 0 (first of a tie), argmax q is 1
  });

  it("identical logits give zero KLD, ratio 1 and 100 % same top", () => {
    const c = randomCase(50, 17, 4);
    const acc = new KldAccumulator();
    acc.add(c.ref, c.ref, 17, null);
    const s = acc.finish();
    expect(s.kld.max).toBeLessThan(1e-12);
    expect(s.sameTop.value).toBe(1);
    expect(s.perplexity).toBeNull();
    expect(s.deltaP).toBeNull();
  });

  it("percentiles interpolate at f·(n−1)", () => {
    const xs = Float64Array.from([1, 2, 3, 4, 5]);
    expect(percentileSorted(xs, 0.9)).toBeCloseTo(4.6, 12);
    expect(percentileSorted(xs, 0.1)).toBeCloseTo(1.4, 12);
    expect(percentileSorted(xs, 0.999)).toBeCloseTo(4.996, 12);
    expect(percentileSorted(xs, 0)).toBe(1);
    expect(percentileSorted(xs, 1)).toBe(5);
    expect(percentileSorted(Float64Array.from([7]), 0.5)).toBe(7);
  });
});

describe("input errors", () => {
  it("names the argument at fault", () => {
    const acc = new KldAccumulator();
    const bad = (f: () => void, field: string) => {
      try {
        f();
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(EvalInputError);
        expect((e as EvalInputError).field).toBe(field);
      }
    };
    bad(() => acc.add(new Float32Array(6), new Float32Array(4), 2, null), "qLogits");
    bad(() => acc.add(new Float32Array(7), new Float32Array(7), 2, null), "refLogits");
    bad(() => acc.add(new Float32Array(6), new Float32Array(6), 3, new Int32Array(3)), "targets");
    bad(() => acc.add(new Float32Array(6), new Float32Array(6), 3, new Int32Array([0, 3])), "targets[1]");
    bad(() => acc.add(new Float32Array([0, Number.NaN]), new Float32Array(2), 2, null), "refLogits row 0");
    bad(() => acc.add(new Float32Array(4), new Float32Array(4), 0, null), "vocab");
    bad(() => acc.finish(), "KldAccumulator");
  });
});

describe("formatKldTable", () => {
  it("prints llama-perplexity's block", () => {
    const acc = new KldAccumulator();
    acc.add(new Float32Array([0, 0]), new Float32Array([0, Math.log(3)]), 2, new Int32Array([1]));
    const text = formatKldTable(acc.finish());
    const lines = text.split("\n");
    expect(lines[0]).toBe("====== Perplexity statistics ======");
    expect(lines).toContain("Mean PPL(Q)                   :   1.333333 ±   0.000000");
    expect(lines).toContain("Mean PPL(base)                :   2.000000 ±   0.000000");
    expect(lines).toContain("====== KL divergence statistics ======");
    expect(lines).toContain("Mean    KLD:   0.143841 ±   0.000000");
    expect(lines).toContain("99.9%   KLD:   0.143841");
    expect(lines).toContain("Mean    Δp: 25.000 ± 0.000 %");
    expect(lines).toContain("RMS Δp    : 25.000 ± 0.000 %");
    expect(lines.at(-2)).toBe("Same top p:  0.000 ± 0.000 %");
  });
});

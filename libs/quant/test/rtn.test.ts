import { describe, expect, it } from "vitest";
import { gptq, IntQuantInputError, quantizeIntRtn, roundHalfEven } from "../src/index.ts";
import { loadCases, proxyLoss, rng, rtnF64 } from "./int-fixtures.ts";

describe("quantizeIntRtn on hand-worked rows", () => {
  it("symmetric 2-bit rounds half to even (zero = 2^(b-1))", () => {
    // scale = 2·1.5/3 = 1, zero = 2: 1.5→2 (+2 = 4, clamped to 3), 0.5→0, −0.5→0, −1.5→−2
    const r = quantizeIntRtn(Float32Array.of(1.5, 0.5, -0.5, -1.5), 1, 4, {
      bits: 2,
      groupSize: -1,
      symmetric: true,
      clip: "minmax",
    });
    expect(Array.from(r.codes)).toEqual([3, 2, 2, 0]);
    expect(Array.from(r.scales)).toEqual([1]);
    expect(Array.from(r.zeros)).toEqual([2]);
    expect(Array.from(r.dequant)).toEqual([1, 0, 0, -2]);
  });

  it("asymmetric 3-bit: scale = (max − min)/7, zero = round(−min/scale)", () => {
    // scale = 3.5/7 = 0.5, zero = 3: −1.5→−3+3 = 0, 2→4+3 = 7, 0.25→0.5→0 (+3), 0.75→1.5→2 (+3 = 5)
    const r = quantizeIntRtn(Float32Array.of(-1.5, 2, 0.25, 0.75), 1, 4, {
      bits: 3,
      groupSize: 4,
      symmetric: false,
      clip: "minmax",
    });
    expect(Array.from(r.codes)).toEqual([0, 7, 3, 5]);
    expect(Array.from(r.zeros)).toEqual([3]);
    expect(Array.from(r.dequant)).toEqual([-1.5, 2, 0, 1]);
  });

  it("an all-zero group gets the range [−1, 1] instead of a zero scale", () => {
    const r = quantizeIntRtn(new Float32Array(6), 2, 3, { bits: 4, groupSize: -1, symmetric: false, clip: "minmax" });
    expect(Array.from(r.scales)).toEqual([2 / 15, 2 / 15].map(Math.fround));
    expect(Array.from(r.dequant)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it("roundHalfEven is torch.round", () => {
    expect([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999, -3.5000001].map(roundHalfEven)).toEqual([
      -2, -2, -0, 0, 2, 2, 2, -4,
    ]);
  });
});

describe("quantizeIntRtn reproduces the oracle's round-to-nearest loss", () => {
  for (const { c, W, H } of loadCases())
    it(c.name, () => {
      const r = quantizeIntRtn(W, c.rows, c.cols, {
        bits: c.bits,
        groupSize: c.group,
        symmetric: c.sym,
        clip: "minmax",
      });
      // the plain f64 RTN is the oracle's, to its reported loss
      const ref = rtnF64(W, c.rows, c.cols, c.bits, c.group, c.sym);
      expect(Math.abs(proxyLoss(W, ref.dequant, H, c.rows, c.cols) / c.rtn_proxy_loss - 1)).toBeLessThan(1e-6);
      // ours rounds the scale to f32 first: codes move only where x/scale sat exactly on a tie
      let ties = 0;
      for (let i = 0; i < r.codes.length; i++) {
        if (r.codes[i] === ref.codes[i]) continue;
        expect(ref.tie[i], `code ${i} moved off a non-tie`).toBe(1);
        expect(Math.abs(r.codes[i] - ref.codes[i])).toBe(1);
        ties++;
      }
      if (!c.sym) expect(ties).toBe(0);
      const loss = proxyLoss(W, r.dequant, H, c.rows, c.cols);
      expect(Math.abs(loss / c.rtn_proxy_loss - 1)).toBeLessThan(0.01);
      const g = c.group === -1 ? c.cols : c.group;
      expect(Array.from(r.gIdx)).toEqual(Array.from({ length: c.cols }, (_, i) => Math.floor(i / g)));
    });
});

describe("RTN and GPTQ share one quantizer", () => {
  const configs = [
    { rows: 7, cols: 70, bits: 4, groupSize: 32, symmetric: true },
    { rows: 5, cols: 129, bits: 3, groupSize: -1, symmetric: false },
    { rows: 3, cols: 300, bits: 8, groupSize: 128, symmetric: false },
    { rows: 4, cols: 40, bits: 2, groupSize: 16, symmetric: true },
  ];
  for (const cfg of configs)
    it(JSON.stringify(cfg), async () => {
      const r = rng(cfg.cols * 7 + cfg.bits);
      const w = Float32Array.from({ length: cfg.rows * cfg.cols }, () => (r() - 0.5) * (r() < 0.05 ? 1 : 0.1));
      const h = new Float32Array(cfg.cols * cfg.cols);
      for (let i = 0; i < cfg.cols; i++) h[i * cfg.cols + i] = 1; // no error feedback
      const a = quantizeIntRtn(w, cfg.rows, cfg.cols, { ...cfg, clip: "minmax" });
      const b = await gptq(w, cfg.rows, cfg.cols, h, { ...cfg, actOrder: false });
      expect(Array.from(b.codes)).toEqual(Array.from(a.codes));
      expect(Array.from(b.scales)).toEqual(Array.from(a.scales));
      expect(Array.from(b.zeros)).toEqual(Array.from(a.zeros));
      expect(Array.from(b.dequant)).toEqual(Array.from(a.dequant));
    });
});

describe("MSE clipping", () => {
  const errOf = (w: Float32Array, q: Float32Array, from: number, to: number) => {
    let e = 0;
    for (let i = from; i < to; i++) e += Math.abs(q[i] - w[i]) ** 2.4;
    return e;
  };

  it("never does worse than min/max per group and shrinks ranges with outliers", () => {
    const r = rng(11);
    const [rows, cols, g] = [16, 96, 32];
    // mostly small weights plus rare large outliers: the case clipping exists for
    const w = Float32Array.from({ length: rows * cols }, () => (r() - 0.5) * 0.02 * (r() < 0.03 ? 20 : 1));
    for (const symmetric of [true, false]) {
      const base = quantizeIntRtn(w, rows, cols, { bits: 3, groupSize: g, symmetric, clip: "minmax" });
      const mse = quantizeIntRtn(w, rows, cols, { bits: 3, groupSize: g, symmetric, clip: "mse" });
      let shrunk = 0;
      for (let grp = 0; grp < (rows * cols) / g; grp++) {
        expect(errOf(w, mse.dequant, grp * g, grp * g + g)).toBeLessThanOrEqual(
          errOf(w, base.dequant, grp * g, grp * g + g) * (1 + 1e-12),
        );
        expect(mse.scales[grp]).toBeLessThanOrEqual(base.scales[grp]);
        expect(mse.scales[grp]).toBeGreaterThanOrEqual(base.scales[grp] * 0.2 * (1 - 1e-6));
        if (mse.scales[grp] < base.scales[grp] * 0.999) shrunk++;
      }
      expect(shrunk).toBeGreaterThan(0);
    }
  });

  it("picks the grid point with the smallest error (exhaustive check on one group)", () => {
    const w = Float32Array.of(-0.9, 0.05, 0.1, -0.12, 0.07, 0.02, -0.04, 0.11);
    const res = quantizeIntRtn(w, 1, 8, { bits: 2, groupSize: -1, symmetric: true, clip: "mse" });
    let bestErr = Number.POSITIVE_INFINITY;
    let bestScale = 0;
    for (let i = 0; i < 80; i++) {
      const p = 1 - i / 100;
      const scale = (2 * 0.9 * p) / 3;
      let e = 0;
      for (const x of w) {
        const code = Math.min(3, Math.max(0, roundHalfEven(x / scale) + 2));
        e += Math.abs(scale * (code - 2) - x) ** 2.4;
      }
      if (e < bestErr) [bestErr, bestScale] = [e, scale];
    }
    expect(res.scales[0]).toBe(Math.fround(bestScale));
  });

  it("llm-compressor's settings (maxShrink 0.2, patience 5) stay within 20% of the range", () => {
    const r = rng(5);
    const w = Float32Array.from({ length: 4 * 64 }, () => (r() - 0.5) * (r() < 0.02 ? 10 : 1));
    const base = quantizeIntRtn(w, 4, 64, { bits: 4, groupSize: 32, symmetric: false, clip: "minmax" });
    const res = quantizeIntRtn(w, 4, 64, {
      bits: 4,
      groupSize: 32,
      symmetric: false,
      clip: "mse",
      mse: { maxShrink: 0.2, patience: 5 },
    });
    for (let i = 0; i < res.scales.length; i++)
      expect(res.scales[i]).toBeGreaterThanOrEqual(base.scales[i] * 0.8 * (1 - 1e-6));
  });
});

describe("quantizeIntRtn input errors", () => {
  const opts = {
    bits: 4,
    groupSize: 8,
    symmetric: true,
    clip: "minmax" as const,
    name: "model.layers.0.mlp.experts.3.up_proj.weight",
  };
  const catchErr = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return e;
    }
    throw new Error("expected an error");
  };
  it("are IntQuantInputError naming the tensor and the field", () => {
    const e1 = catchErr(() => quantizeIntRtn(new Float32Array(8), 2, 8, opts));
    expect(e1).toBeInstanceOf(IntQuantInputError);
    expect((e1 as IntQuantInputError)._tag).toBe("IntQuantInputError");
    expect((e1 as Error).message).toMatch(/experts\.3\.up_proj\.weight: weight has 8 values, shape \[2, 8\] needs 16/);
    expect((catchErr(() => quantizeIntRtn(new Float32Array(16), 2, 8, { ...opts, bits: 1 })) as Error).message).toMatch(
      /bits must be an integer in 2\.\.8, got 1/,
    );
    expect(
      (catchErr(() => quantizeIntRtn(new Float32Array(16), 2, 8, { ...opts, groupSize: 0 })) as Error).message,
    ).toMatch(/groupSize/);
    const w = new Float32Array(16);
    w[11] = Number.POSITIVE_INFINITY;
    expect((catchErr(() => quantizeIntRtn(w, 2, 8, opts)) as Error).message).toMatch(/weight\[1, 3\] is Infinity/);
    expect(
      (catchErr(() => quantizeIntRtn(new Float32Array(16), 2, 8, { ...opts, clip: "p99" as never })) as Error).message,
    ).toMatch(/clip must be/);
  });
});

import { describe, expect, it } from "vitest";
import { type GptqNativeResult, native } from "../ts/index.ts";
import { codesVsOracle, loadGptqCases, tieOffset } from "./gptq_fixtures.ts";

/** How close to a rounding boundary (in code units) an exempted "tie" row's value must be. */
const TIE_EPS = 1e-4;

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// A calibration-like Hessian: 2/T·XᵀX of correlated, unevenly scaled activations.
function randomHessian(cols: number, tokens: number, r: () => number, dead: number[] = []) {
  const x = new Float64Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    let carry = 0;
    for (let c = 0; c < cols; c++) {
      carry = 0.6 * carry + (r() - 0.5);
      x[t * cols + c] = dead.includes(c) ? 0 : carry * (0.2 + (1.8 * c) / cols);
    }
  }
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++)
    for (let i = 0; i < cols; i++) {
      const a = x[t * cols + i];
      if (a === 0) continue;
      for (let j = 0; j < cols; j++) h[i * cols + j] += (2 * a * x[t * cols + j]) / tokens;
    }
  return h;
}

describe("gptqQuantize reproduces the oracle (../shared/fixtures/gptq)", () => {
  for (const { c, t } of loadGptqCases())
    it(c.name, async () => {
      const W = t.W.data as Float32Array;
      const H = t.H.data as Float32Array;
      const res = await native.gptqQuantize(
        W,
        c.rows,
        c.cols,
        H,
        c.bits,
        c.group,
        c.sym,
        c.actorder,
        c.damp,
        c.blocksize,
      );
      const Q = t.Q.data as Float32Array;
      const S = t.scale.data as Float32Array;
      const Z = t.zero.data as Float32Array;
      const gIdx = t.g_idx.data as Int32Array;
      const nG = t.scale.shape[1];
      expect(Array.from(res.gIdx)).toEqual(Array.from(gIdx));
      expect(Array.from(res.perm)).toEqual(Array.from(t.perm.data as Int32Array));
      expect(res.scales.length).toBe(S.length);
      // oracle codes recovered from its dequantized Q: code = round(Q/scale) + zero
      const oracleCode = (i: number) => {
        const g = Math.floor(i / c.cols) * nG + gIdx[i % c.cols];
        return Math.round(Q[i] / S[g]) + Z[g];
      };
      const cmp = codesVsOracle(res.codes, oracleCode, c.rows, c.cols, c.sym, res.perm);
      console.log(
        `${c.name}: codes ${cmp.same} identical (${cmp.tieRows} tie rows), loss ${res.loss} vs oracle ${c.proxy_loss}`,
      );
      expect(cmp.same).toBeGreaterThanOrEqual(0.999);
      expect(cmp.tieRows).toBeLessThanOrEqual(Math.ceil(c.rows * 0.02));
      // an exempted row must really sit on a rounding boundary: the replayed value is within
      // TIE_EPS code units of code + ½ (f64 replay vs the oracle's f32-stored Q and scales: ~1e-6)
      for (const tie of cmp.ties) {
        const at = tie.row * c.cols + (res.perm[tie.position] ?? 0);
        const off = tieOffset(c, t, tie.row, tie.position, oracleCode(at));
        console.log(`${c.name}: tie row ${tie.row} position ${tie.position}: |x/scale + zero − (q + ½)| = ${off}`);
        expect(off, `row ${tie.row}`).toBeLessThan(TIE_EPS);
      }
      let scaleBad = 0;
      let zeroBad = 0;
      for (let i = 0; i < S.length; i++) {
        if (Math.abs(res.scales[i] - S[i]) > 1e-6 * Math.abs(S[i])) scaleBad++;
        if (res.zeros[i] !== Z[i]) zeroBad++;
      }
      // a flipped (near-)tie changes later weights of its row, hence possibly a later group's range
      expect(scaleBad).toBeLessThanOrEqual(Math.ceil(S.length * 0.001) + cmp.tieRows * nG);
      expect(zeroBad).toBeLessThanOrEqual(Math.ceil(S.length * 0.001) + cmp.tieRows * nG);
      expect(Math.abs(res.loss / c.proxy_loss - 1)).toBeLessThan(0.005);
      expect(res.loss).toBeLessThan(c.rtn_proxy_loss);
      // dequant is exactly what a reader decodes from codes, the stored f32 scales, zeros, g_idx
      expectReaderDequant(res, c.rows, c.cols);
    });
});

/** dequant[r, c] === f32((code − zero)·scale) bit for bit, as libs/formats decodes a checkpoint. */
function expectReaderDequant(res: GptqNativeResult, rows: number, cols: number) {
  const nG = res.scales.length / rows;
  let bad = 0;
  for (let r = 0; r < rows; r++)
    for (let col = 0; col < cols; col++) {
      const g = r * nG + res.gIdx[col];
      const want = Math.fround((res.codes[r * cols + col] - res.zeros[g]) * res.scales[g]);
      if (!Object.is(res.dequant[r * cols + col], want) && !(want === 0 && res.dequant[r * cols + col] === 0)) bad++;
    }
  expect(bad).toBe(0);
}

describe("blocked GPTQ agrees with the unblocked scalar reference", () => {
  const configs = [
    { rows: 37, cols: 150, bits: 4, group: 32, sym: true, act: false, block: 128 },
    { rows: 21, cols: 203, bits: 3, group: 64, sym: false, act: true, block: 32 },
    { rows: 9, cols: 97, bits: 2, group: -1, sym: false, act: false, block: 40 },
    { rows: 64, cols: 260, bits: 8, group: 256, sym: true, act: true, block: 128 },
    { rows: 5, cols: 77, bits: 5, group: 16, sym: false, act: false, block: 7 },
    { rows: 13, cols: 64, bits: 6, group: 64, sym: true, act: false, block: 128, dead: [0, 5, 63] },
    { rows: 3, cols: 33, bits: 7, group: 11, sym: false, act: true, block: 16, dead: [2] },
  ];
  for (const cfg of configs)
    it(JSON.stringify(cfg), () => {
      const r = rng(cfg.rows * 1000 + cfg.cols);
      const h = randomHessian(cfg.cols, 3 * cfg.cols, r, cfg.dead ?? []);
      const w = Float32Array.from({ length: cfg.rows * cfg.cols }, () => (r() - 0.5) * 0.1);
      const args = [w, cfg.rows, cfg.cols, h, cfg.bits, cfg.group, cfg.sym, cfg.act, 0.01, cfg.block] as const;
      const fast = native.gptqQuantizeSync(...args);
      const ref = native.gptqQuantizeRef(...args);
      let same = 0;
      for (let i = 0; i < fast.codes.length; i++) if (fast.codes[i] === ref.codes[i]) same++;
      expect(same / fast.codes.length).toBeGreaterThanOrEqual(0.999);
      expect(Array.from(fast.perm)).toEqual(Array.from(ref.perm));
      expect(Array.from(fast.gIdx)).toEqual(Array.from(ref.gIdx));
      expect(Math.abs(fast.loss / ref.loss - 1)).toBeLessThan(1e-6);
      const maxq = 2 ** cfg.bits - 1;
      for (const c of fast.codes) expect(c).toBeLessThanOrEqual(maxq);
      for (const d of cfg.dead ?? [])
        for (let row = 0; row < cfg.rows; row++) expect(fast.dequant[row * cfg.cols + d]).toBe(0);
    });
});

// Representability checked from the bits, independently of any conversion routine.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function exactIn(v: number, dtype: "f32" | "bf16" | "f16"): boolean {
  if (!(v > 0) || !Number.isFinite(v) || Math.fround(v) !== v) return false;
  if (dtype === "f32") return true;
  if (dtype === "bf16") {
    f32[0] = v;
    return (u32[0] & 0xffff) === 0;
  }
  if (v > 65504) return false;
  const e = Math.floor(Math.log2(v));
  const quantum = 2 ** Math.max(e - 10, -24); // 11 significant bits, subnormal grid 2^-24
  return Number.isInteger(v / quantum);
}

describe("scaleDtype: scales rounded to the stored dtype before codes, dequant and error feedback", () => {
  const configs = [
    { rows: 37, cols: 150, bits: 4, group: 32, sym: true, act: false, block: 128 },
    { rows: 21, cols: 203, bits: 3, group: 64, sym: false, act: true, block: 32 },
    { rows: 9, cols: 97, bits: 8, group: -1, sym: false, act: false, block: 40 },
    { rows: 5, cols: 77, bits: 5, group: 16, sym: false, act: true, block: 7 },
  ];
  for (const dtype of ["f32", "bf16", "f16"] as const)
    for (const cfg of configs)
      it(`${dtype} ${JSON.stringify(cfg)}`, () => {
        const r = rng(cfg.rows * 31 + cfg.cols);
        const h = randomHessian(cfg.cols, 3 * cfg.cols, r);
        const w = Float32Array.from({ length: cfg.rows * cfg.cols }, () => (r() - 0.5) * 0.1 * (r() < 0.05 ? 8 : 1));
        const args = [w, cfg.rows, cfg.cols, h, cfg.bits, cfg.group, cfg.sym, cfg.act, 0.01, cfg.block, dtype] as const;
        const fast = native.gptqQuantizeSync(...args);
        const ref = native.gptqQuantizeRef(...args);
        for (const res of [fast, ref]) {
          for (const s of res.scales) expect(exactIn(s, dtype), `scale ${s} in ${dtype}`).toBe(true);
          expectReaderDequant(res, cfg.rows, cfg.cols);
          for (const z of res.zeros) expect(z >= 0 && z <= 2 ** cfg.bits - 1).toBe(true);
        }
        let same = 0;
        for (let i = 0; i < fast.codes.length; i++) if (fast.codes[i] === ref.codes[i]) same++;
        expect(same / fast.codes.length).toBeGreaterThanOrEqual(0.999);
        expect(Math.abs(fast.loss / ref.loss - 1)).toBeLessThan(1e-6);
        if (dtype !== "f32") {
          // narrower scales are a real change, yet GPTQ stays close to the f32-scale loss
          const wide = native.gptqQuantizeSync(
            w,
            cfg.rows,
            cfg.cols,
            h,
            cfg.bits,
            cfg.group,
            cfg.sym,
            cfg.act,
            0.01,
            cfg.block,
          );
          expect(Array.from(fast.scales)).not.toEqual(Array.from(wide.scales));
          expect(fast.loss / wide.loss).toBeLessThan(1.05);
        }
      });

  it("f16: a scale that underflows becomes 2^-24, one that overflows is an error", () => {
    const tiny = Float32Array.from({ length: 2 * 16 }, (_, i) => ((i % 7) - 3) * 1e-9);
    const eye = new Float64Array(16 * 16);
    for (let i = 0; i < 16; i++) eye[i * 16 + i] = 1;
    const res = native.gptqQuantizeSync(tiny, 2, 16, eye, 4, 8, false, false, 0.01, 128, "f16");
    expect(Array.from(res.scales)).toEqual([2 ** -24, 2 ** -24, 2 ** -24, 2 ** -24]);
    expectReaderDequant(res, 2, 16);
    const huge = Float32Array.from({ length: 2 * 16 }, (_, i) => (i % 2 ? 1 : -1) * 1e6);
    expect(() => native.gptqQuantizeSync(huge, 2, 16, eye, 4, 8, true, false, 0.01, 128, "f16")).toThrow(
      /overflows f16/,
    );
    expect(() => native.gptqQuantizeRef(huge, 2, 16, eye, 4, 8, true, false, 0.01, 128, "f16")).toThrow(
      /overflows f16/,
    );
    // the same weights are fine with bf16 scales (f32's exponent range)
    const ok = native.gptqQuantizeSync(huge, 2, 16, eye, 4, 8, true, false, 0.01, 128, "bf16");
    for (const s of ok.scales) expect(exactIn(s, "bf16")).toBe(true);
  });

  it("rejects an unknown scaleDtype", () => {
    const eye = new Float64Array(8 * 8);
    for (let i = 0; i < 8; i++) eye[i * 8 + i] = 1;
    expect(() =>
      native.gptqQuantizeSync(new Float32Array(16), 2, 8, eye, 4, 8, true, false, 0.01, 128, "fp8" as never),
    ).toThrow(/scaleDtype must be "f32", "bf16" or "f16", got "fp8"/);
  });
});

describe("gptqQuantize input errors", () => {
  const w = new Float32Array(4 * 8).fill(0.1);
  const h = new Float32Array(64);
  for (let i = 0; i < 8; i++) h[i * 9] = 1;
  it("names the problem", async () => {
    expect(() => native.gptqQuantizeSync(w, 4, 8, h, 9, 8, true, false, 0.01, 128)).toThrow(/bits must be 2\.\.8/);
    expect(() => native.gptqQuantizeSync(w, 4, 8, h, 4, 0, true, false, 0.01, 128)).toThrow(/groupSize/);
    expect(() => native.gptqQuantizeSync(w, 4, 8, new Float32Array(10), 4, 8, true, false, 0.01, 128)).toThrow(
      /h is smaller/,
    );
    expect(() => native.gptqQuantizeSync(w.subarray(1), 4, 8, h, 4, 8, true, false, 0.01, 128)).toThrow(/w is smaller/);
    const wn = w.slice();
    wn[13] = Number.NaN;
    expect(() => native.gptqQuantizeSync(wn, 4, 8, h, 4, 8, true, false, 0.01, 128)).toThrow(/w\[1,5\] is not finite/);
    const bad = h.slice();
    bad[9] = -5; // not positive definite even after damping
    await expect(native.gptqQuantize(w, 4, 8, bad, 4, 8, true, false, 0.01, 128)).rejects.toThrow(
      /not positive definite/,
    );
  });
});

describe("gptqQuantize runs off the event loop", () => {
  it("lets timers fire while a large weight is quantized", async () => {
    const [rows, cols] = [1024, 512];
    const r = rng(8);
    const h = randomHessian(cols, cols + 64, r);
    const w = Float32Array.from({ length: rows * cols }, () => r() - 0.5);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const res = await native.gptqQuantize(w, rows, cols, h, 4, 128, true, true, 0.01, 128);
    clearInterval(timer);
    expect(res.codes.length).toBe(rows * cols);
    // the call takes well over a millisecond; had it blocked the loop, no timer would have fired
    expect(ticks).toBeGreaterThan(0);
  });
});

describe("gptqQuantize proxy loss on wide weights (the D·H path above 2048 columns)", () => {
  it("matches a JS tr((W−Q)·H·(W−Q)ᵀ)", () => {
    const [rows, cols] = [3, 2100];
    const r = rng(21);
    const h = new Float32Array(cols * cols);
    for (let i = 0; i < cols; i++) {
      h[i * cols + i] = 2 + r();
      if (i + 1 < cols) h[i * cols + i + 1] = h[(i + 1) * cols + i] = 0.5;
    }
    const w = Float32Array.from({ length: rows * cols }, () => r() - 0.5);
    const res = native.gptqQuantizeSync(w, rows, cols, h, 3, 128, false, false, 0.01, 128);
    let loss = 0;
    for (let row = 0; row < rows; row++)
      for (let i = 0; i < cols; i++) {
        const di = w[row * cols + i] - res.dequant[row * cols + i];
        let acc = 0;
        for (const j of [i - 1, i, i + 1])
          if (j >= 0 && j < cols) acc += h[i * cols + j] * (w[row * cols + j] - res.dequant[row * cols + j]);
        loss += di * acc;
      }
    expect(Math.abs(res.loss / loss - 1)).toBeLessThan(1e-9);
  }, 30_000); // 2 s alone; more when the suite shares the cores
});

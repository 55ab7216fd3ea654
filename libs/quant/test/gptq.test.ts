import { native } from "@moeq/native";
import { describe, expect, it } from "vitest";
import { GptqNumericalError, gptq, IntQuantInputError, quantizeIntRtn } from "../src/index.ts";
import { codesVsOracle, loadCases, proxyLoss, rng } from "./int-fixtures.ts";

describe("gptq (libs/quant) against the oracle cases", () => {
  for (const { c, W, H, Q, scale, zero, gIdx, perm } of loadCases())
    it(c.name, async () => {
      const res = await gptq(W, c.rows, c.cols, H, {
        bits: c.bits,
        groupSize: c.group,
        symmetric: c.sym,
        actOrder: c.actorder,
        damp: c.damp,
        blockSize: c.blocksize,
      });
      const nG = scale.length / c.rows;
      const oracleCode = (i: number) => {
        const g = Math.floor(i / c.cols) * nG + gIdx[i % c.cols];
        return Math.round(Q[i] / scale[g]) + zero[g];
      };
      const cmp = codesVsOracle(res.codes, oracleCode, c.rows, c.cols, c.sym, perm);
      expect(cmp.same).toBeGreaterThanOrEqual(0.999);
      expect(cmp.tieRows).toBeLessThanOrEqual(Math.ceil(c.rows * 0.02));
      expect(Array.from(res.gIdx)).toEqual(Array.from(gIdx));
      expect(Array.from(res.perm)).toEqual(Array.from(perm));
      expect(Math.abs(res.loss / c.proxy_loss - 1)).toBeLessThan(0.005);
      // the reported loss is the loss of the returned dequant, recomputed independently
      expect(Math.abs(proxyLoss(W, res.dequant, H, c.rows, c.cols) / res.loss - 1)).toBeLessThan(1e-9);
      expect(res.loss).toBeLessThan(c.rtn_proxy_loss);
    });
});

describe("Hessian normalisation (raw Σ w·xxᵀ + hessianWeight)", () => {
  it("gives GPTQ's 2/Σw convention: same codes and loss as the pre-normalised Hessian", async () => {
    const r = rng(3);
    const [tokens, rows, cols] = [400, 24, 72];
    const x = new Float32Array(tokens * cols);
    for (let t = 0; t < tokens; t++) {
      let carry = 0;
      for (let c = 0; c < cols; c++) {
        carry = 0.5 * carry + (r() - 0.5);
        x[t * cols + c] = carry * (0.3 + c / cols);
      }
    }
    const tw = Float32Array.from({ length: tokens }, () => r());
    const raw = new Float64Array(cols * cols);
    await native.hessianAccumulate(raw, x, tokens, cols, tw);
    let total = 0;
    for (const v of tw) total += v;
    // independent normalised Hessian, computed here in f64
    const h = new Float64Array(cols * cols);
    for (let t = 0; t < tokens; t++)
      for (let i = 0; i < cols; i++)
        for (let j = 0; j < cols; j++) h[i * cols + j] += (2 * tw[t] * x[t * cols + i] * x[t * cols + j]) / total;
    const w = Float32Array.from({ length: rows * cols }, () => (r() - 0.5) * 0.1);
    const opts = { bits: 4, groupSize: 24, symmetric: false, actOrder: true };
    const a = await gptq(w, rows, cols, raw, { ...opts, hessianWeight: total });
    const b = await gptq(w, rows, cols, h, opts);
    let same = 0;
    for (let i = 0; i < a.codes.length; i++) if (a.codes[i] === b.codes[i]) same++;
    expect(same / a.codes.length).toBeGreaterThanOrEqual(0.999);
    expect(Math.abs(a.loss / b.loss - 1)).toBeLessThan(1e-6);
    const rtn = quantizeIntRtn(w, rows, cols, { ...opts, clip: "minmax" });
    expect(a.loss).toBeLessThan(proxyLoss(w, rtn.dequant, h, rows, cols));
  });
});

describe("gptq errors", () => {
  const w = new Float32Array(4 * 8).fill(0.01);
  const eye = new Float32Array(64);
  for (let i = 0; i < 8; i++) eye[i * 9] = 1;
  const opts = { bits: 4, groupSize: 8, symmetric: true, actOrder: false, name: "layers.1.experts.7.down_proj.weight" };
  it("reject bad inputs with IntQuantInputError naming tensor and field", async () => {
    await expect(gptq(w, 4, 8, new Float32Array(10), opts)).rejects.toThrow(/down_proj\.weight: hessian has 10 values/);
    await expect(gptq(w, 4, 8, eye, { ...opts, hessianWeight: 0 })).rejects.toBeInstanceOf(IntQuantInputError);
    await expect(gptq(w, 4, 8, eye, { ...opts, damp: -1 })).rejects.toThrow(/damp must be/);
    await expect(gptq(w, 4, 8, eye, { ...opts, blockSize: 0 })).rejects.toThrow(/blockSize/);
    const hn = eye.slice();
    hn[3] = Number.NaN;
    await expect(gptq(w, 4, 8, hn, opts)).rejects.toThrow(/hessian\[0, 3\] is NaN/);
  });
  it("report a non-positive-definite Hessian as GptqNumericalError", async () => {
    const bad = eye.slice();
    bad[9] = -4;
    const err = await gptq(w, 4, 8, bad, opts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GptqNumericalError);
    expect((err as GptqNumericalError)._tag).toBe("GptqNumericalError");
    expect((err as Error).message).toMatch(/down_proj\.weight: .*not positive definite/);
  });
});

// Gated DeltaNet pieces against independent references: the causal depthwise conv against a
// direct sum written here, the chunked delta rule against the token recurrence (the definition)
// over odd sizes and chunk lengths, and both against a one-step closed form; the native kernels
// (native/src/hard_deltanet.cc, which the engine runs) against their double-precision references
// and the TypeScript forms.
import { causalConv1dSilu, type DeltaRuleInputs, gatedDeltaRuleChunked, gatedDeltaRuleRecurrent } from "@moeq/models";
import { native } from "@moeq/native";
import { describe, expect, it } from "vitest";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

function l2rows(x: Float32Array, d: number) {
  for (let i = 0; i < x.length; i += d) {
    let n = 0;
    for (let j = 0; j < d; j++) n += x[i + j] ** 2;
    const r = 1 / Math.sqrt(n + 1e-6);
    for (let j = 0; j < d; j++) x[i + j] *= r;
  }
}

function inputs(seed: number, T: number, H: number, dk: number, dv: number): DeltaRuleInputs {
  const r = rng(seed);
  const q = Float32Array.from({ length: T * H * dk }, () => r());
  const k = Float32Array.from({ length: T * H * dk }, () => r());
  l2rows(q, dk);
  l2rows(k, dk);
  for (let i = 0; i < q.length; i++) q[i] *= dk ** -0.5;
  return {
    seqLen: T,
    numHeads: H,
    kDim: dk,
    vDim: dv,
    q,
    k,
    v: Float32Array.from({ length: T * H * dv }, () => 2 * r()),
    // g = −exp(A)·softplus(·) < 0: decays between e^-3 and 1
    g: Float32Array.from({ length: T * H }, () => -3 * (r() + 0.5)),
    beta: Float32Array.from({ length: T * H }, () => r() + 0.5),
  };
}

function maxAbsDiff(a: Float32Array, b: Float32Array) {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("causal depthwise conv1d + SiLU", { timeout: 60_000 }, () => {
  it("matches a direct left-padded sum for odd batch / length / channels / kernel", () => {
    const r = rng(7);
    for (const [B, T, C, K] of [
      [1, 1, 1, 1],
      [2, 5, 3, 4],
      [3, 11, 7, 3],
      [1, 2, 5, 4],
    ]) {
      const x = Float32Array.from({ length: B * T * C }, () => r());
      const w = Float32Array.from({ length: C * K }, () => r());
      const got = causalConv1dSilu(x, w, B, T, C, K);
      for (let b = 0; b < B; b++)
        for (let t = 0; t < T; t++)
          for (let c = 0; c < C; c++) {
            // PyTorch conv1d with padding K−1, output cut to the first T: y[t] = Σ_j w[j]·x[t+j−(K−1)]
            let s = 0;
            for (let j = 0; j < K; j++) {
              const src = t + j - (K - 1);
              if (src >= 0) s += w[c * K + j] * x[(b * T + src) * C + c];
            }
            const want = s / (1 + Math.exp(-s));
            expect(got[(b * T + t) * C + c]).toBeCloseTo(want, 5);
          }
    }
  });

  it("is causal: changing a later step leaves earlier outputs unchanged", () => {
    const r = rng(3);
    const [T, C, K] = [9, 4, 4];
    const x = Float32Array.from({ length: T * C }, () => r());
    const w = Float32Array.from({ length: C * K }, () => r());
    const a = causalConv1dSilu(x, w, 1, T, C, K);
    x[6 * C + 2] += 5;
    const b = causalConv1dSilu(x, w, 1, T, C, K);
    expect(a.subarray(0, 6 * C)).toEqual(b.subarray(0, 6 * C));
    expect(a[6 * C + 2]).not.toBe(b[6 * C + 2]);
  });
});

describe("gated delta rule", { timeout: 60_000 }, () => {
  it("one step equals the closed form o = β(q·k)·v", () => {
    const x = inputs(11, 1, 3, 5, 4);
    for (const out of [gatedDeltaRuleRecurrent(x), gatedDeltaRuleChunked(x, 4)])
      for (let h = 0; h < 3; h++) {
        let qk = 0;
        for (let i = 0; i < 5; i++) qk += x.q[h * 5 + i] * x.k[h * 5 + i];
        for (let j = 0; j < 4; j++) expect(out[h * 4 + j]).toBeCloseTo(x.beta[h] * qk * x.v[h * 4 + j], 6);
      }
  });

  it("chunked and recurrent forms agree (odd lengths, chunk sizes, head dims)", () => {
    let seed = 100;
    for (const [T, H, dk, dv] of [
      [1, 1, 1, 1],
      [7, 2, 3, 5],
      [23, 3, 8, 6],
      [65, 2, 16, 16],
      [130, 1, 9, 7],
    ])
      for (const chunk of [1, 4, 7, 64]) {
        const x = inputs(seed++, T, H, dk, dv);
        const rec = gatedDeltaRuleRecurrent(x);
        const chk = gatedDeltaRuleChunked(x, chunk);
        let scale = 0;
        for (const v of rec) scale = Math.max(scale, Math.abs(v));
        expect(maxAbsDiff(rec, chk) / scale, `T=${T} H=${H} dk=${dk} dv=${dv} chunk=${chunk}`).toBeLessThan(1e-5);
      }
  });

  it("the state decays: with g → −∞ every step only sees itself", () => {
    const x = inputs(5, 6, 2, 4, 3);
    const cut: DeltaRuleInputs = { ...x, g: new Float32Array(x.g.length).fill(-80) };
    const out = gatedDeltaRuleChunked(cut, 4);
    const single = gatedDeltaRuleRecurrent({ ...cut, seqLen: 1 });
    expect(maxAbsDiff(out.subarray(0, 2 * 3), single)).toBeLessThan(1e-6);
    for (let t = 1; t < 6; t++)
      for (let h = 0; h < 2; h++) {
        let qk = 0;
        for (let i = 0; i < 4; i++) qk += x.q[(t * 2 + h) * 4 + i] * x.k[(t * 2 + h) * 4 + i];
        for (let j = 0; j < 3; j++)
          expect(out[(t * 2 + h) * 3 + j]).toBeCloseTo(x.beta[t * 2 + h] * qk * x.v[(t * 2 + h) * 3 + j], 5);
      }
  });
});

describe("native Gated DeltaNet kernels", { timeout: 60_000 }, () => {
  it("chunked kernel = f32 recurrence = double reference = TypeScript forms (batched, odd sizes, chunk sizes)", async () => {
    let seed = 500;
    for (const [B, T, H, dk, dv] of [
      [1, 1, 1, 1, 1],
      [2, 9, 3, 5, 7],
      [3, 70, 2, 16, 8],
      [1, 131, 4, 12, 10],
    ])
      for (const chunk of [1, 5, 64]) {
        const parts = Array.from({ length: B }, () => inputs(seed++, T, H, dk, dv));
        const cat = (f: (x: DeltaRuleInputs) => Float32Array) => {
          const arrs = parts.map(f);
          const out = new Float32Array(arrs.reduce((n, a) => n + a.length, 0));
          let o = 0;
          for (const a of arrs) {
            out.set(a, o);
            o += a.length;
          }
          return out;
        };
        const [q, k, v, g, beta] = [
          cat((x) => x.q),
          cat((x) => x.k),
          cat((x) => x.v),
          cat((x) => x.g),
          cat((x) => x.beta),
        ];
        const n = B * T * H * dv;
        const fast = new Float32Array(n);
        const rec = new Float32Array(n);
        const ref = new Float32Array(n);
        await native.gatedDeltaRuleF32(q, k, v, g, beta, fast, B, T, H, dk, dv, chunk);
        native.gatedDeltaRuleRecurrentF32(q, k, v, g, beta, rec, B, T, H, dk, dv);
        native.gatedDeltaRuleF32Ref(q, k, v, g, beta, ref, B, T, H, dk, dv);
        const ts = cat((x) => gatedDeltaRuleRecurrent(x));
        let scale = 0;
        for (const x of ref) scale = Math.max(scale, Math.abs(x));
        const what = `B=${B} T=${T} H=${H} dk=${dk} dv=${dv} chunk=${chunk}`;
        expect(maxAbsDiff(fast, ref) / scale, what).toBeLessThan(2e-5);
        expect(maxAbsDiff(rec, ref) / scale, what).toBeLessThan(2e-5);
        expect(maxAbsDiff(ts, ref) / scale, what).toBeLessThan(1e-6);
      }
  });

  it("conv kernel = double reference = TypeScript form; wrong sizes are RangeErrors", () => {
    const r = rng(77);
    for (const [B, T, C, K] of [
      [1, 1, 1, 1],
      [2, 13, 9, 4],
      [3, 5, 17, 3],
    ]) {
      const x = Float32Array.from({ length: B * T * C }, () => r());
      const w = Float32Array.from({ length: C * K }, () => r());
      const fast = new Float32Array(x.length);
      const ref = new Float32Array(x.length);
      native.causalConv1dSiluF32(x, w, fast, B, T, C, K);
      native.causalConv1dSiluF32Ref(x, w, ref, B, T, C, K);
      expect(maxAbsDiff(fast, ref)).toBeLessThan(1e-6);
      expect(maxAbsDiff(causalConv1dSilu(x, w, B, T, C, K), ref)).toBeLessThan(1e-6);
    }
    const x = new Float32Array(12);
    expect(() => native.causalConv1dSiluF32(x, new Float32Array(8), new Float32Array(12), 1, 4, 3, 4)).toThrow(
      RangeError,
    );
    expect(() => native.causalConv1dSiluF32(x, new Float32Array(12), x, 1, 4, 3, 4)).toThrow(/alias/);
    expect(() =>
      native.gatedDeltaRuleRecurrentF32(
        x,
        x,
        x,
        new Float32Array(3),
        new Float32Array(3),
        new Float32Array(11),
        1,
        3,
        1,
        4,
        4,
      ),
    ).toThrow(RangeError);
  });
});

// GPU-vs-CPU checks of the CUDA kernels, shared by cuda.test.ts (vitest, when the addon has CUDA)
// and bench/gpu/check.ts (the GPU machine has no vitest: Node runs these files directly). Every
// check draws fresh random inputs with odd sizes, poisons outputs first, compares with the CPU
// kernels' scalar references (or the GPTQ oracle cases) and throws with the numbers on failure.
// Tolerances (‖gpu − cpu‖ / ‖cpu‖ unless said): f32 GEMM/Hessian/calibration 1e-5, TF32 5e-3, bf16 2e-2;
// softmax/swiglu/rmsnorm 1e-5 max-relative; top-k exact; GPTQ codes ≥ 99.9 % identical, loss
// within 0.5 %; against the CPU reference a row may differ only after an exact tie (see checkGptqBatched).

import { cudaKernels } from "../ts/device.ts";
import { native } from "../ts/index.ts";
import type { AttentionOptions } from "../ts/kernels/attention.ts";
import type { CudaBuffer, CudaKernels } from "../ts/kernels/cuda.ts";
import type { GptqScaleDtype } from "../ts/kernels/quant.ts";
import { codesVsOracle, loadGptqCases } from "./gptq_fixtures.ts";

export function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

export const randF32 = (n: number, r: () => number, scale = 1) =>
  Float32Array.from({ length: n }, () => r() * 2 * scale);

export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) return Number.POSITIVE_INFINITY;
    d += (got[i] - want[i]) ** 2;
    s += want[i] ** 2;
  }
  return Math.sqrt(d / Math.max(s, 1e-300));
}

export function assert(ok: boolean, msg: string): void {
  if (!ok) throw new Error(msg);
}

export class Dev {
  readonly cu: CudaKernels;
  private readonly held: CudaBuffer[] = [];
  constructor(cu: CudaKernels) {
    this.cu = cu;
  }
  up(a: ArrayBufferView): CudaBuffer {
    const b = this.cu.cudaAlloc(a.byteLength);
    this.cu.cudaUpload(b, a);
    this.held.push(b);
    return b;
  }
  /** poisoned (NaN bytes) so unwritten outputs show */
  out(bytes: number): CudaBuffer {
    const b = this.cu.cudaAlloc(bytes);
    this.cu.cudaUpload(b, new Uint8Array(bytes).fill(0xff));
    this.held.push(b);
    return b;
  }
  f32(b: CudaBuffer): Float32Array {
    const a = new Float32Array(b.bytes / 4);
    this.cu.cudaDownload(b, a);
    return a;
  }
  free(): void {
    for (const b of this.held) this.cu.cudaFree(b);
  }
}

export async function withDev<T>(f: (d: Dev) => Promise<T> | T): Promise<T> {
  const d = new Dev(cudaKernels(0));
  try {
    return await f(d);
  } finally {
    d.free();
  }
}

export async function checkGemm(seed: number): Promise<string> {
  return withDev((d) => {
    const r = rng(seed);
    const lines: string[] = [];
    for (const [m, n, k] of [
      [37, 53, 71],
      [1, 129, 3],
      [257, 190, 301],
    ])
      for (const [ta, tb] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ] as const)
        for (const [prec, tol] of [
          ["f32", 1e-5],
          ["tf32", 5e-3],
          ["bf16", 2e-2],
        ] as const) {
          const a = randF32(m * k, r);
          const b = randF32(k * n, r);
          const c0 = randF32(m * n, r);
          const want = Float32Array.from(c0);
          native.gemmF32Ref(a, b, want, m, n, k, ta, tb, 0.75, 0.5);
          const dc = d.up(c0);
          d.cu.cudaGemmF32(d.up(a), d.up(b), dc, m, n, k, ta, tb, 0.75, 0.5, prec);
          const e = relErr(d.f32(dc), want);
          assert(e < tol, `gemm ${m}x${n}x${k} tA=${ta} tB=${tb} ${prec}: rel err ${e} >= ${tol}`);
          if (ta && tb) lines.push(`${m}x${n}x${k} ${prec} ${e.toExponential(2)}`);
        }
    const [m, n, k, batch] = [29, 45, 61, 5];
    const a = randF32(batch * m * k, r);
    const b = randF32(batch * k * n, r);
    const want = new Float32Array(batch * m * n);
    for (let i = 0; i < batch; i++) {
      const c = new Float32Array(m * n);
      native.gemmF32Ref(
        a.subarray(i * m * k, (i + 1) * m * k),
        b.subarray(i * k * n, (i + 1) * k * n),
        c,
        m,
        n,
        k,
        false,
        true,
      );
      want.set(c, i * m * n);
    }
    const dc = d.out(batch * m * n * 4);
    d.cu.cudaGemmBatchedF32(d.up(a), d.up(b), dc, m, n, k, batch, false, true, 1, 0, "f32");
    const e = relErr(d.f32(dc), want);
    assert(e < 1e-5, `batched gemm: rel err ${e}`);
    lines.push(`batched ${batch}×${m}x${n}x${k} ${e.toExponential(2)}`);
    return lines.join("; ");
  });
}

export async function checkHessian(seed: number): Promise<string> {
  return withDev(async (d) => {
    const r = rng(seed);
    const [tokens, cols] = [301, 67];
    const x = randF32(tokens * cols, r);
    const w = Float32Array.from({ length: tokens }, () => r() + 0.5);
    const want = new Float64Array(cols * cols);
    native.hessianAccumulateRef(want, x, tokens, cols, w);
    const out: string[] = [];
    for (const [prec, tol] of [
      ["f32", 1e-5],
      ["tf32", 5e-3],
      ["bf16", 2e-2],
    ] as const) {
      const h0 = randF32(cols * cols, r);
      const dh = d.up(h0);
      await d.cu.cudaHessianAccumulate(dh, d.up(x), tokens, cols, d.up(w), prec);
      const got = d.f32(dh);
      for (let i = 0; i < got.length; i++) got[i] -= h0[i];
      const e = relErr(got, want);
      assert(e < tol, `hessian ${prec}: rel err ${e} >= ${tol}`);
      out.push(`${prec} ${e.toExponential(2)}`);
    }
    const dh = d.out(cols * cols * 4);
    d.cu.cudaUpload(dh, new Float32Array(cols * cols));
    await d.cu.cudaHessianAccumulate(dh, d.up(x), tokens, cols, null);
    const plain = new Float64Array(cols * cols);
    native.hessianAccumulateRef(plain, x, tokens, cols, null);
    const e = relErr(d.f32(dh), plain);
    assert(e < 1e-5, `hessian unweighted: rel err ${e}`);
    return `${tokens}x${cols}: ${out.join(", ")}, unweighted ${e.toExponential(2)}`;
  });
}

function maxRel(got: Float32Array, want: Float32Array): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) return Number.POSITIVE_INFINITY;
    m = Math.max(m, Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), 1e-6));
  }
  return m;
}

export async function checkElementwise(seed: number): Promise<string> {
  return withDev((d) => {
    const r = rng(seed);
    const [rows, cols] = [97, 61];
    const x = randF32(rows * cols, r, 4);
    // softmax
    const sm = new Float32Array(rows * cols);
    native.softmaxF32Ref(x, sm, rows, cols);
    const dsm = d.out(rows * cols * 4);
    d.cu.cudaSoftmaxF32(d.up(x), dsm, rows, cols);
    const eS = maxRel(d.f32(dsm), sm);
    assert(eS < 1e-5, `softmax: max rel err ${eS}`);
    // top-k on a coarse grid (many ties) with NaNs
    const k = 7;
    const xt = Float32Array.from({ length: rows * cols }, () => Math.round(r() * 6) / 2);
    for (let i = 0; i < 20; i++) xt[Math.floor((r() + 0.5) * rows * cols)] = Number.NaN;
    const wi = new Int32Array(rows * k);
    const wv = new Float32Array(rows * k);
    native.topkF32Ref(xt, rows, cols, k, wi, wv);
    const di = d.out(rows * k * 4);
    const dv = d.out(rows * k * 4);
    d.cu.cudaTopkF32(d.up(xt), rows, cols, k, di, dv);
    const gi = new Int32Array(rows * k);
    d.cu.cudaDownload(di, gi);
    const gv = d.f32(dv);
    for (let i = 0; i < rows * k; i++)
      assert(
        gi[i] === wi[i] && Object.is(gv[i], wv[i]),
        `topk: element ${i}: (${gi[i]}, ${gv[i]}) vs (${wi[i]}, ${wv[i]})`,
      );
    // swiglu on interleaved gate/up (strides 2·cols, 2)
    const inter = 45;
    const gu = randF32(rows * 2 * inter, r, 3);
    const gate = gu;
    const up = gu.subarray(1);
    const sw = new Float32Array(rows * inter);
    native.swigluF32Ref(gate, up, sw, rows, inter, 2 * inter, 2);
    const dgu = d.up(gu);
    const dsw = d.out(rows * inter * 4);
    d.cu.cudaSwigluF32(dgu, d.cu.cudaView(dgu, 4, gu.byteLength - 4), dsw, rows, inter, 2 * inter, 2);
    const eW = maxRel(d.f32(dsw), sw);
    assert(eW < 1e-5, `swiglu: max rel err ${eW}`);
    // rmsnorm with weight, (1 + w)
    const wgt = randF32(cols, r);
    const rn = new Float32Array(rows * cols);
    native.rmsNormF32Ref(x, wgt, rn, rows, cols, 1e-6, true);
    const drn = d.out(rows * cols * 4);
    d.cu.cudaRmsNormF32(d.up(x), d.up(wgt), drn, rows, cols, 1e-6, true);
    const eR = maxRel(d.f32(drn), rn);
    assert(eR < 1e-5, `rmsnorm: max rel err ${eR}`);
    return `softmax ${eS.toExponential(2)}, topk exact, swiglu ${eW.toExponential(2)}, rmsnorm ${eR.toExponential(2)}`;
  });
}

export async function checkAttention(seed: number): Promise<string> {
  return withDev((d) => {
    const r = rng(seed);
    const out: string[] = [];
    const cases: Array<{ name: string; o: AttentionOptions }> = [
      {
        name: "gqa causal window sinks mla",
        o: {
          batch: 2,
          seqLen: 37,
          numHeads: 6,
          numKvHeads: 2,
          headDim: 40,
          vHeadDim: 24,
          window: 9,
          sinks: randF32(6, r, 2),
        },
      },
      {
        name: "bidirectional chunked strided",
        o: {
          batch: 1,
          seqLen: 50,
          numHeads: 4,
          headDim: 64,
          causal: false,
          chunk: 8,
          scale: 0.3,
          qStride: 4 * 64 + 5,
          outStride: 4 * 64 + 3,
        },
      },
      { name: "mqa causal d128", o: { batch: 1, seqLen: 33, numHeads: 8, numKvHeads: 1, headDim: 128 } },
    ];
    for (const { name, o } of cases) {
      const rows = o.batch * o.seqLen;
      const hkv = o.numKvHeads ?? o.numHeads;
      const dv = o.vHeadDim ?? o.headDim;
      const qs = o.qStride ?? o.numHeads * o.headDim;
      const os = o.outStride ?? o.numHeads * dv;
      const q = randF32(rows * qs, r);
      const k = randF32(rows * hkv * o.headDim, r);
      const v = randF32(rows * hkv * dv, r);
      const want = new Float32Array(rows * os);
      native.attentionF32Ref(q, k, v, want, o);
      const dout = d.up(new Float32Array(rows * os));
      d.cu.cudaAttentionF32(d.up(q), d.up(k), d.up(v), dout, o);
      const e = relErr(d.f32(dout), want);
      assert(e < 1e-5, `attention ${name}: rel err ${e}`);
      out.push(`${name} ${e.toExponential(2)}`);
    }
    return out.join("; ");
  });
}

interface GptqRes {
  codes: Uint8Array;
  scales: Float32Array;
  zeros: Int32Array;
  dequant: Float32Array;
  gIdx: Int32Array;
  perm: Int32Array;
  loss: number[];
}

async function gpuGptq(
  d: Dev,
  w: Float32Array,
  h: Float32Array,
  E: number,
  rows: number,
  cols: number,
  bits: number,
  group: number,
  sym: boolean,
  act: boolean,
  damp: number,
  bs: number,
  scaleDtype: GptqScaleDtype = "f32",
): Promise<GptqRes> {
  const r = await d.cu.cudaGptqBatched(d.up(w), d.up(h), E, rows, cols, bits, group, sym, act, damp, bs, scaleDtype);
  const codes = new Uint8Array(r.codes.bytes);
  const scales = new Float32Array(r.scales.bytes / 4);
  const zeros = new Int32Array(r.zeros.bytes / 4);
  const dequant = new Float32Array(r.dequant.bytes / 4);
  d.cu.cudaDownload(r.codes, codes);
  d.cu.cudaDownload(r.scales, scales);
  d.cu.cudaDownload(r.zeros, zeros);
  d.cu.cudaDownload(r.dequant, dequant);
  for (const b of [r.codes, r.scales, r.zeros, r.dequant]) d.cu.cudaFree(b);
  return { codes, scales, zeros, dequant, gIdx: r.gIdx, perm: r.perm, loss: Array.from(r.loss) };
}

/** The oracle cases (../shared/fixtures/gptq), one expert each: codes and loss against the oracle. */
export async function checkGptqOracle(): Promise<string> {
  return withDev(async (d) => {
    const lines: string[] = [];
    for (const { c, t } of loadGptqCases()) {
      const W = t.W.data as Float32Array;
      const H = t.H.data as Float32Array;
      const g = await gpuGptq(d, W, H, 1, c.rows, c.cols, c.bits, c.group, c.sym, c.actorder, c.damp, c.blocksize);
      const Q = t.Q.data as Float32Array;
      const S = t.scale.data as Float32Array;
      const Z = t.zero.data as Float32Array;
      const gIdx = t.g_idx.data as Int32Array;
      const nG = t.scale.shape[1];
      assert(
        Array.from(g.gIdx).join() === Array.from(gIdx).join() &&
          Array.from(g.perm).join() === Array.from(t.perm.data).join(),
        `${c.name}: g_idx / perm differ from the oracle`,
      );
      // scales are rounded to f32 (as gptqQuantize does), which moves the symmetric −max tie:
      // such rows are counted apart (codesVsOracle, shared with gptq.test.ts)
      const oracleCode = (i: number) => {
        const gi = Math.floor(i / c.cols) * nG + gIdx[i % c.cols];
        return Math.round(Q[i] / S[gi]) + Z[gi];
      };
      const cmp = codesVsOracle(g.codes, oracleCode, c.rows, c.cols, c.sym, g.perm);
      const lossRatio = g.loss[0] / c.proxy_loss;
      assert(cmp.same >= 0.999, `${c.name}: only ${(100 * cmp.same).toFixed(3)}% of codes match the oracle`);
      assert(cmp.tieRows <= Math.ceil(c.rows * 0.02), `${c.name}: ${cmp.tieRows} tie rows`);
      assert(Math.abs(lossRatio - 1) < 0.005, `${c.name}: loss ${g.loss[0]} vs oracle ${c.proxy_loss}`);
      // and the same inputs through the CPU kernel: identical codes
      const cpu = native.gptqQuantizeSync(
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
      let sameCpu = 0;
      for (let i = 0; i < c.rows * c.cols; i++) if (cpu.codes[i] === g.codes[i]) sameCpu++;
      assert(
        sameCpu / (c.rows * c.cols) >= 0.999,
        `${c.name}: ${sameCpu}/${c.rows * c.cols} codes match the CPU kernel`,
      );
      lines.push(
        `${c.name} codes vs oracle ${(100 * cmp.same).toFixed(2)}% (${cmp.tieRows} tie rows), vs CPU ${sameCpu}/${c.rows * c.cols}, loss×${lossRatio.toFixed(5)}`,
      );
    }
    return lines.join("; ");
  });
}

function calibHessian(cols: number, tokens: number, r: () => number, dead: number[]): Float32Array {
  const x = new Float32Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    let carry = 0;
    for (let c = 0; c < cols; c++) {
      carry = 0.6 * carry + r();
      x[t * cols + c] = dead.includes(c) ? 0 : carry * (0.2 + (1.8 * c) / cols);
    }
  }
  const h = new Float64Array(cols * cols);
  native.hessianAccumulateRef(h, x, tokens, cols, null);
  return Float32Array.from(h, (v) => (2 * v) / tokens);
}

/** Several experts in one batched call, each against the CPU scalar reference on the same inputs. */
export async function checkGptqBatched(seed: number): Promise<string> {
  return withDev(async (d) => {
    const r = rng(seed);
    const lines: string[] = [];
    for (const [E, rows, cols, bits, group, sym, act, bs, sd] of [
      [5, 70, 200, 4, 64, false, true, 128, "f32"],
      [3, 33, 131, 3, -1, true, false, 128, "f32"],
      [4, 48, 300, 4, 32, true, true, 96, "f32"],
      [2, 257, 160, 8, 128, false, false, 64, "f32"],
      [3, 40, 192, 4, 64, false, true, 128, "bf16"],
      [2, 37, 130, 4, 32, true, false, 64, "f16"],
    ] as const) {
      const W = randF32(E * rows * cols, r, 0.1);
      const H = new Float32Array(E * cols * cols);
      // 4·cols tokens: with ~2·cols the 48x300 case is so ill-conditioned that even the CPU kernel
      // and its scalar reference disagree on whole rows (near-tie cascades), which tests nothing
      for (let e = 0; e < E; e++)
        H.set(calibHessian(cols, 4 * cols + 7, r, e === 1 ? [3, cols - 2] : []), e * cols * cols);
      const g = await gpuGptq(d, W, H, E, rows, cols, bits, group, sym, act, 0.01, bs, sd);
      // deterministic: a second run gives the same bytes (a race would move them)
      const g2 = await gpuGptq(d, W, H, E, rows, cols, bits, group, sym, act, 0.01, bs, sd);
      assert(
        Buffer.from(g.codes).equals(Buffer.from(g2.codes)) &&
          Buffer.from(g.dequant.buffer).equals(Buffer.from(g2.dequant.buffer)),
        `batched E=${E} ${rows}x${cols}: two runs on the same inputs differ`,
      );
      const nG = g.scales.length / (E * rows);
      let same = 0;
      let rowsOff = 0;
      let worstLoss = 0;
      for (let e = 0; e < E; e++) {
        const c = native.gptqQuantizeRef(
          W.subarray(e * rows * cols, (e + 1) * rows * cols),
          rows,
          cols,
          H.subarray(e * cols * cols, (e + 1) * cols * cols),
          bits,
          group,
          sym,
          act,
          0.01,
          bs,
          sd,
        );
        assert(
          Array.from(c.perm).join() === Array.from(g.perm.subarray(e * cols, (e + 1) * cols)).join() &&
            Array.from(c.gIdx).join() === Array.from(g.gIdx.subarray(e * cols, (e + 1) * cols)).join(),
          `batched E=${E} expert ${e}: perm / g_idx differ from the CPU reference`,
        );
        for (let row = 0; row < rows; row++) {
          let rowSame = 0;
          for (let i = row * cols; i < (row + 1) * cols; i++)
            if (c.codes[i] === g.codes[e * rows * cols + i]) rowSame++;
          same += rowSame;
          if (rowSame < cols) {
            rowsOff++;
            // The first difference (in quantization order) must be an exact tie: for symmetric
            // quantization the group's most negative weight sits at −(maxq+1)/2 scales by
            // construction, and when its group starts a block its value is the trailing GEMM's
            // output, whose last bit differs between BLAS implementations — code 0 on one side,
            // 1 on the other. Everything after it in the row follows from that choice.
            const p = c.perm;
            let j = 0;
            while (c.codes[row * cols + p[j]] === g.codes[e * rows * cols + row * cols + p[j]]) j++;
            const pair = [c.codes[row * cols + p[j]], g.codes[e * rows * cols + row * cols + p[j]]].sort().join();
            const gsz = group === -1 ? cols : group;
            assert(
              sym && j % bs === 0 && j % gsz === 0 && pair === "0,1",
              `batched E=${E} ${rows}x${cols} expert ${e} row ${row}: first difference at quantization position ${j} (codes ${pair}) is not a block-start tie`,
            );
            continue;
          }
          // a row with identical codes has identical group parameters
          for (let i = row * nG; i < (row + 1) * nG; i++)
            assert(
              Math.abs(c.scales[i] - g.scales[e * rows * nG + i]) <= 1e-6 * Math.abs(c.scales[i]) &&
                c.zeros[i] === g.zeros[e * rows * nG + i],
              `batched E=${E} expert ${e} row ${row}: scale/zero ${i % nG} differ (${g.scales[e * rows * nG + i]}/${g.zeros[e * rows * nG + i]} vs ${c.scales[i]}/${c.zeros[i]})`,
            );
        }
        worstLoss = Math.max(worstLoss, Math.abs(g.loss[e] / c.loss - 1));
      }
      const frac = same / (E * rows * cols);
      assert(
        frac >= 0.99 && rowsOff <= Math.ceil(0.1 * E * rows),
        `batched E=${E} ${rows}x${cols}: codes ${same}/${E * rows * cols} match the CPU reference, ${rowsOff} rows differ`,
      );
      assert(worstLoss < 5e-3, `batched E=${E} ${rows}x${cols}: loss off the CPU reference's by ${worstLoss}`);
      lines.push(
        `E=${E} ${rows}x${cols} w${bits} g${group} act=${act} bs=${bs} ${sd}: codes ${(100 * frac).toFixed(3)}% (${rowsOff} rows differ) loss Δ ${worstLoss.toExponential(1)}`,
      );
    }
    // a scale the stored dtype cannot hold is an error naming the expert, not a silent inf
    {
      const [rows, cols] = [8, 64];
      const W = randF32(2 * rows * cols, r, 1e6);
      const H = new Float32Array(2 * cols * cols);
      for (let e = 0; e < 2; e++) H.set(calibHessian(cols, 4 * cols + 7, r, []), e * cols * cols);
      let msg = "no error";
      try {
        await gpuGptq(d, W, H, 2, rows, cols, 4, 32, true, false, 0.01, 64, "f16");
      } catch (e) {
        msg = (e as Error).message;
      }
      assert(/expert \d+: a group scale overflows f16/.test(msg), `f16 overflow not reported: ${msg}`);
      lines.push("f16 scale overflow rejected");
    }
    return lines.join("; ");
  });
}

/** The soft-weighted layer calibration against the CPU kernels' references, each precision. */
export async function checkMoeCalibrate(seed: number): Promise<string> {
  return withDev(async (d) => {
    const r = rng(seed);
    const [N, H, E, I] = [301, 96, 6, 40];
    const x = randF32(N * H, r);
    const G = randF32(E * H, r, 0.3);
    const GU = randF32(E * 2 * I * H, r, 0.2);
    const logits = new Float32Array(N * E);
    native.gemmF32Ref(x, G, logits, N, E, H, false, true);
    const p = new Float32Array(N * E);
    native.softmaxF32Ref(logits, p, N, E);
    const wantIn: Float64Array[] = [];
    const wantDown: Float64Array[] = [];
    for (let e = 0; e < E; e++) {
      const w = Float32Array.from({ length: N }, (_, t) => p[t * E + e]);
      const hi = new Float64Array(H * H);
      native.hessianAccumulateRef(hi, x, N, H, w);
      wantIn.push(hi);
      const y = new Float32Array(N * 2 * I);
      native.gemmF32Ref(x, GU.subarray(e * 2 * I * H, (e + 1) * 2 * I * H), y, N, 2 * I, H, false, true);
      const a = new Float32Array(N * I);
      native.swigluF32Ref(y, y.subarray(I), a, N, I, 2 * I, 1);
      const hd = new Float64Array(I * I);
      native.hessianAccumulateRef(hd, a, N, I, w);
      wantDown.push(hd);
    }
    const out: string[] = [];
    for (const [prec, tol] of [
      ["f32", 1e-5],
      ["tf32", 5e-3],
      ["bf16", 2e-2],
    ] as const) {
      const res = await d.cu.cudaMoeCalibrate(d.up(x), N, H, d.up(G), d.up(GU), E, I, prec);
      const eP = relErr(d.f32(res.probs), p);
      assert(eP < 1e-5, `moeCalibrate ${prec} probs: rel err ${eP}`);
      const hIn = d.f32(res.hIn);
      const hDown = d.f32(res.hDown);
      let worstIn = 0;
      let worstDown = 0;
      for (let e = 0; e < E; e++) {
        worstIn = Math.max(worstIn, relErr(hIn.subarray(e * H * H, (e + 1) * H * H), wantIn[e]));
        worstDown = Math.max(worstDown, relErr(hDown.subarray(e * I * I, (e + 1) * I * I), wantDown[e]));
      }
      assert(
        worstIn < tol && worstDown < tol,
        `moeCalibrate ${prec}: Hessian rel err in ${worstIn} down ${worstDown} (tol ${tol})`,
      );
      for (const b of [res.probs, res.hIn, res.hDown]) d.cu.cudaFree(b);
      out.push(
        `${prec}: probs ${eP.toExponential(1)} hIn ${worstIn.toExponential(1)} hDown ${worstDown.toExponential(1)}`,
      );
    }
    return `N=${N} H=${H} E=${E} I=${I}: ${out.join("; ")}`;
  });
}

/** Bad input: typed RangeError/TypeError naming the argument, never a crash. */
export function checkRejections(): string {
  const cu = cudaKernels(0);
  const small = cu.cudaAlloc(16);
  const expectThrow = (f: () => unknown, re: RegExp) => {
    try {
      f();
    } catch (e) {
      assert(re.test((e as Error).message), `wrong error: ${(e as Error).message}`);
      return;
    }
    throw new Error(`no error for ${re}`);
  };
  expectThrow(
    () => cu.cudaGemmF32(small, small, small, 4, 4, 4),
    /cudaGemmF32: a: CudaBuffer holds 16 bytes, needs 64/,
  );
  expectThrow(() => cu.cudaView(small, 8, 16), /outside the buffer/);
  expectThrow(() => cu.cudaUpload(small, new Float32Array(5)), /does not fit/);
  expectThrow(() => cu.cudaSoftmaxF32({ bytes: 16, device: 0 }, small, 1, 4), /expected a CudaBuffer/);
  expectThrow(() => cu.cudaIpcOpen(new Uint8Array(10), 0, 0, 4), /handle must be 64 bytes/);
  cu.cudaFree(small);
  expectThrow(() => cu.cudaDownload(small, new Uint8Array(4)), /was freed/);
  return "typed errors for short buffers, bad views, foreign objects, bad handles, freed buffers";
}

/**
 * Two processes: this one allocates, fills (on the GPU) and records an interprocess event; the
 * child (cuda_ipc_child.ts) opens the handle, orders its stream after the event, checks the bytes,
 * writes its answer into the second half and records its own event, which this process waits on.
 */
export async function checkIpc(): Promise<string> {
  const { spawn } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const cu = cudaKernels(0);
  const n = 4 << 20; // floats per half (16 MiB)
  const buf = cu.cudaAlloc(2 * n * 4 + 4096);
  const half = cu.cudaView(buf, 4096, n * 4);
  const answer = cu.cudaView(buf, 4096 + n * 4, n * 4);
  cu.cudaUpload(answer, new Float32Array(n));
  cu.cudaFillUniform(half, n, 1234, -1, 1);
  const mine = new Float32Array(n);
  cu.cudaDownload(half, mine);
  let sum = 0;
  for (const v of mine) sum += v;
  const produced = cu.cudaIpcEventCreate(0);
  const consumed = cu.cudaIpcEventCreate(0);
  cu.cudaEventRecord(produced);
  const ex = cu.cudaIpcExport(half);
  const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
  const child = spawn(process.execPath, [fileURLToPath(new URL("./cuda_ipc_child.ts", import.meta.url))], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const msg = JSON.stringify({
    handle: hex(ex.handle),
    offset: ex.offset,
    n,
    allocationBytes: ex.allocationBytes,
    produced: hex(produced.handle),
    consumed: hex(consumed.handle),
  });
  child.stdin.end(`${msg}\n`);
  let outText = "";
  child.stdout.on("data", (c: Buffer) => {
    outText += c.toString();
  });
  const code: number = await new Promise((res) => child.on("exit", (c) => res(c ?? -1)));
  assert(code === 0, `ipc child exited with ${code}: ${outText}`);
  const reply = JSON.parse(outText.trim().split("\n").pop() ?? "{}") as { sum: number; pastEnd: string; wrote: number };
  assert(Math.abs(reply.sum - sum) <= 1e-6 * Math.abs(sum) + 1e-3, `child read sum ${reply.sum}, producer ${sum}`);
  assert(/past the end/.test(reply.pastEnd), `child: past-end open not rejected: ${reply.pastEnd}`);
  cu.cudaEventWait(consumed);
  const back = new Float32Array(n);
  cu.cudaDownload(answer, back);
  for (let i = 0; i < n; i += 997)
    assert(back[i] === mine[i] * 2, `answer[${i}] = ${back[i]}, expected ${mine[i] * 2}`);
  cu.cudaFree(half);
  cu.cudaFree(answer);
  cu.cudaFree(buf);
  return `child opened a ${(n * 4) >> 20} MiB view at offset ${ex.offset}, read sum ${reply.sum.toFixed(3)}, wrote ${reply.wrote} floats back; past-end open rejected`;
}

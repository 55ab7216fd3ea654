// GPU-vs-CPU checks of the forward-pass CUDA kernels (ops.cu): log-softmax, activations, clamped
// SwiGLU, RMSNorm variants, LayerNorm, L2 norm, RoPE, bf16/f16/f8 widening, mixed-operand GEMM,
// causal conv1d + SiLU and the gated delta rule. Shared by cuda.test.ts (vitest on a CUDA build)
// and bench/gpu/check.ts (Node on the GPU machine). Each kernel gets fresh random inputs with odd
// sizes (plus edge values where the formula switches branches), outputs poisoned with NaN first,
// and is compared with the CPU kernel's double-precision *Ref — or bit for bit where the GPU
// kernel rounds exactly as the CPU one (RoPE, dtype decoding). Tolerances are in docs/gpu.md.

import { native } from "../ts/index.ts";
import type { WeightDtype } from "../ts/kernels/gemm.ts";
import type { ActivationKind } from "../ts/kernels/ops.ts";
import { assert, randF32, relErr, rng, withDev } from "./cuda_checks.ts";

/** max |got − want| / max(|want|, 1); non-finite values must match exactly (NaN with NaN). */
export function scaledErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(want[i]) || !Number.isFinite(got[i])) {
      if (!Object.is(got[i], want[i]) && !(Number.isNaN(got[i]) && Number.isNaN(want[i])))
        return Number.POSITIVE_INFINITY;
      continue;
    }
    m = Math.max(m, Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), 1));
  }
  return m;
}

const fmt = (e: number) => e.toExponential(1);

/** Both error measures under their bounds, or a thrown error naming the kernel and the numbers. */
function within(name: string, got: Float32Array, want: Float32Array, tolScaled: number, tolNorm: number): string {
  const s = scaledErr(got, want);
  const n = relErr(
    got.map((v, i) => (Number.isFinite(want[i]) ? v : 0)),
    want.map((v) => (Number.isFinite(v) ? v : 0)),
  );
  assert(
    s < tolScaled && n < tolNorm,
    `${name}: scaled err ${s} (tol ${tolScaled}), norm rel err ${n} (tol ${tolNorm})`,
  );
  return `${name} ${fmt(s)}`;
}

function sameBits(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

export async function checkRowOps(seed: number): Promise<string> {
  return withDev((d) => {
    const r = rng(seed);
    const out: string[] = [];
    // log-softmax: odd rows, a vocabulary-wide row, a partly and a fully masked row
    for (const [rows, cols] of [
      [97, 61],
      [3, 50_001],
    ]) {
      const x = randF32(rows * cols, r, 6);
      for (let c = 0; c < cols; c += 3) x[c] = Number.NEGATIVE_INFINITY;
      if (rows > 3) x.fill(Number.NEGATIVE_INFINITY, cols, 2 * cols);
      const want = new Float32Array(rows * cols);
      native.logSoftmaxF32Ref(x, want, rows, cols);
      const dout = d.out(rows * cols * 4);
      d.cu.cudaLogSoftmaxF32(d.up(x), dout, rows, cols);
      out.push(within(`logSoftmax ${rows}x${cols}`, d.f32(dout), want, 1e-5, 2e-6));
    }
    // activations, with the values where branches switch (softplus threshold 20, relu at 0)
    const edges = [-100, -20.5, -8, -1e-3, 0, 1e-3, 19.99, 20, 20.01, 25, 90];
    const xa = Float32Array.from([...edges, ...randF32(4099, r, 8)]);
    const kinds: ActivationKind[] = ["silu", "gelu_tanh", "gelu_erf", "sigmoid", "softplus", "relu"];
    const worst: string[] = [];
    for (const kind of kinds) {
      const want = new Float32Array(xa.length);
      native.activationF32Ref(kind, xa, want);
      const dout = d.out(xa.byteLength);
      d.cu.cudaActivationF32(kind, d.up(xa), dout);
      worst.push(within(kind, d.f32(dout), want, 1e-5, 2e-6));
      // in place (out = x) gives the same values
      const dx = d.up(xa);
      d.cu.cudaActivationF32(kind, dx, dx, xa.length);
      assert(sameBits(d.f32(dx), d.f32(dout)) < 0, `${kind}: in place differs from out of place`);
    }
    out.push(`activations (n=${xa.length}, in place too): ${worst.join(", ")}`);
    // GPT-OSS clamped SwiGLU: interleaved gate/up (strides 2·inter, 2) and fused [gate | up] rows
    const [rows, inter, alpha, limit] = [53, 45, 1.702, 7];
    const gu = randF32(rows * 2 * inter, r, 10);
    for (const [name, rs, cs, upOff] of [
      ["interleaved", 2 * inter, 2, 1],
      ["fused halves", 2 * inter, 1, inter],
    ] as const) {
      const want = new Float32Array(rows * inter);
      native.clampedSwigluF32Ref(gu, gu.subarray(upOff), want, rows, inter, rs, cs, alpha, limit);
      const dgu = d.up(gu);
      const dout = d.out(rows * inter * 4);
      const up = d.cu.cudaView(dgu, upOff * 4, gu.byteLength - upOff * 4);
      d.cu.cudaClampedSwigluF32(dgu, up, dout, rows, inter, rs, cs, alpha, limit);
      d.cu.cudaFree(up);
      out.push(within(`clampedSwiglu ${name}`, d.f32(dout), want, 1e-5, 2e-6));
    }
    // RMSNorm (weight, 1 + weight, weightless), LayerNorm (weight/bias each optional), L2 norm
    const [nr, nc] = [67, 203];
    const x = Float32Array.from(randF32(nr * nc, r, 2), (v) => v + 3);
    const wgt = randF32(nc, r);
    const bias = randF32(nc, r);
    const dx = d.up(x);
    const dw = d.up(wgt);
    const db = d.up(bias);
    for (const [name, w, plusOne] of [
      ["rmsNorm w", true, false],
      ["rmsNorm 1+w", true, true],
      ["rmsNorm weightless", false, false],
    ] as const) {
      const want = new Float32Array(nr * nc);
      native.rmsNormF32Ref(x, w ? wgt : null, want, nr, nc, 1e-6, plusOne);
      const dout = d.out(nr * nc * 4);
      d.cu.cudaRmsNormF32(dx, w ? dw : null, dout, nr, nc, 1e-6, plusOne);
      out.push(within(name, d.f32(dout), want, 1e-5, 2e-6));
    }
    for (const [w, b] of [
      [true, true],
      [true, false],
      [false, true],
      [false, false],
    ] as const) {
      const want = new Float32Array(nr * nc);
      native.layerNormF32Ref(x, w ? wgt : null, b ? bias : null, want, nr, nc, 1e-5);
      const dout = d.out(nr * nc * 4);
      d.cu.cudaLayerNormF32(dx, w ? dw : null, b ? db : null, dout, nr, nc, 1e-5);
      out.push(
        within(`layerNorm${w ? " w" : ""}${b ? " b" : ""}${w || b ? "" : " plain"}`, d.f32(dout), want, 1e-5, 2e-6),
      );
    }
    {
      const want = new Float32Array(nr * nc);
      native.l2NormF32Ref(x, want, nr, nc, 1e-6);
      const dl = d.up(x);
      d.cu.cudaL2NormF32(dl, dl, nr, nc, 1e-6); // in place, as Qwen3-Next normalises q/k
      out.push(within("l2Norm (in place)", d.f32(dl), want, 1e-5, 2e-6));
    }
    return out.join("; ");
  });
}

function ropeTables(maxPos: number, half: number, base: number): { cos: Float32Array; sin: Float32Array } {
  const cos = new Float32Array(maxPos * half);
  const sin = new Float32Array(maxPos * half);
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < half; i++) {
      const a = p * base ** (-i / half);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  return { cos, sin };
}

/** RoPE half-split and interleaved, partial rotary, padded rows: bit for bit with ropeF32. */
export async function checkRope(seed: number): Promise<string> {
  return withDev((d) => {
    const r = rng(seed);
    const out: string[] = [];
    const [rows, heads, headDim, maxPos] = [23, 5, 30, 64];
    for (const [rd, interleaved, stride] of [
      [20, false, heads * headDim + 7],
      [20, true, heads * headDim + 7],
      [30, false, heads * headDim],
      [30, true, heads * headDim],
    ] as const) {
      const { cos, sin } = ropeTables(maxPos, rd / 2, 10000);
      const x = randF32((rows - 1) * stride + heads * headDim, r, 2);
      const pos = Int32Array.from({ length: rows }, () => Math.floor((r() + 0.5) * maxPos));
      const fast = Float32Array.from(x);
      native.ropeF32(fast, cos, sin, pos, rows, heads, headDim, rd, interleaved, stride);
      const ref = Float32Array.from(x);
      native.ropeF32Ref(ref, cos, sin, pos, rows, heads, headDim, rd, interleaved, stride);
      const dx = d.up(x);
      d.cu.cudaRopeF32(dx, d.up(cos), d.up(sin), d.up(pos), rows, heads, headDim, rd, interleaved, stride);
      const got = d.f32(dx);
      const at = sameBits(got, fast);
      assert(at < 0, `rope rd=${rd} interleaved=${interleaved}: element ${at} is ${got[at]}, ropeF32 ${fast[at]}`);
      out.push(
        within(`rope rd=${rd}/${headDim}${interleaved ? " interleaved" : ""} (= ropeF32 bits)`, got, ref, 1e-6, 1e-6),
      );
    }
    // a position past the table is an error naming it; x's other rows are rotated, that row is not
    const { cos, sin } = ropeTables(maxPos, 8, 10000);
    const x = randF32(4 * 16, r);
    const pos = Int32Array.from([1, 2, maxPos, 3]);
    const dx = d.up(x);
    let msg = "no error";
    try {
      d.cu.cudaRopeF32(dx, d.up(cos), d.up(sin), d.up(pos), 4, 1, 16, 16);
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(/position 64 \(row 2\) outside the cos\/sin table of 64 positions/.test(msg), `rope bad position: ${msg}`);
    const got = d.f32(dx);
    assert(sameBits(got.subarray(32, 48), x.subarray(32, 48)) < 0, "rope: the bad row was modified");
    out.push("position past the table rejected");
    return out.join("; ");
  });
}

/** Every bf16 and f16 bit pattern, every f8_e4m3 byte: bit for bit with the CPU decoders. */
export async function checkDecode(): Promise<string> {
  return withDev((d) => {
    const all16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const lines: string[] = [];
    const gpu = (
      src: Uint16Array | Uint8Array,
      dtype: WeightDtype | "widen-bf16" | "widen-f16",
      count = src.length,
    ) => {
      const ds = d.up(src);
      const dout = d.out(count * 4);
      if (dtype === "widen-bf16") d.cu.cudaBf16ToF32(ds, dout);
      else if (dtype === "widen-f16") d.cu.cudaF16ToF32(ds, dout);
      else d.cu.cudaDecodeToF32(ds, dtype, dout, count);
      return d.f32(dout);
    };
    for (const dtype of ["bf16", "f16", "f8_e4m3"] as const) {
      const src = dtype === "f8_e4m3" ? bytes : all16;
      const want = new Float32Array(src.length);
      native.decodeToF32(src, dtype, want, src.length);
      const got = gpu(src, dtype);
      const at = sameBits(got, want);
      assert(at < 0, `decode ${dtype}: pattern ${at} gives ${got[at]}, decodeToF32 ${want[at]}`);
      lines.push(`decode ${dtype} all ${src.length} patterns bit-exact`);
    }
    // bf16ToF32 / f16ToF32: the same values (f16ToF32 writes the canonical NaN, the GPU keeps the payload)
    for (const [name, cpu] of [
      ["widen-bf16", native.bf16ToF32],
      ["widen-f16", native.f16ToF32],
    ] as const) {
      const want = new Float32Array(65536);
      cpu(all16, want);
      const got = gpu(all16, name);
      for (let i = 0; i < 65536; i++)
        assert(
          Number.isNaN(want[i]) ? Number.isNaN(got[i]) : Object.is(got[i], want[i]),
          `${name}: pattern ${i} gives ${got[i]}, CPU ${want[i]}`,
        );
      lines.push(`${name} all 65536 patterns`);
    }
    const f = randF32(1001, rng(3), 100);
    assert(sameBits(gpu(new Uint8Array(f.buffer), "f32", f.length), f) < 0, "decode f32 changed the bits");
    lines.push("f32 bits kept");
    return lines.join("; ");
  });
}

function randomStored(dtype: WeightDtype, count: number, r: () => number): Uint8Array {
  if (dtype === "f32") return new Uint8Array(randF32(count, r, 0.5).buffer);
  if (dtype === "f8_e4m3")
    return Uint8Array.from({ length: count }, () => {
      const b = Math.floor((r() + 0.5) * 256) & 0xff;
      return (b & 0x7f) === 0x7f ? b ^ 1 : b; // not the NaN code
    });
  // 16-bit: a sign, an exponent within ±4 binades of 1 and any mantissa
  const bits = Uint16Array.from({ length: count }, () => {
    const sign = r() < 0 ? 0x8000 : 0;
    const mant = Math.floor((r() + 0.5) * 1024);
    return dtype === "bf16"
      ? sign | ((123 + Math.floor((r() + 0.5) * 8)) << 7) | (mant & 0x7f)
      : sign | ((11 + Math.floor((r() + 0.5) * 8)) << 10) | mant;
  });
  return new Uint8Array(bits.buffer);
}

/** gemmMixed on the GPU: every stored dtype, both layouts, block scales, accumulate; vs gemmMixedRef. */
export async function checkGemmMixed(seed: number): Promise<string> {
  return withDev((d) => {
    const r = rng(seed);
    const [m, n, k] = [37, 150, 133];
    const lines: string[] = [];
    let worst = 0;
    let cases = 0;
    for (const dtype of ["f32", "bf16", "f16", "f8_e4m3"] as const)
      for (const transB of [true, false])
        for (const scaled of [false, true]) {
          const accumulate = scaled === transB;
          const x = randF32(m * k, r);
          const w = randomStored(dtype, n * k, r);
          const [sr, sc] = transB ? [n, k] : [k, n];
          const scale = scaled
            ? Float32Array.from({ length: Math.ceil(sr / 128) * Math.ceil(sc / 128) }, () => 0.25 + (r() + 0.5) * 2)
            : null;
          const y0 = randF32(m * n, r);
          const want = Float32Array.from(y0);
          native.gemmMixedRef(x, w, want, m, n, k, dtype, transB, scale, accumulate);
          const dy = d.up(y0);
          d.cu.cudaGemmMixed(d.up(x), d.up(w), dy, m, n, k, dtype, transB, scale ? d.up(scale) : null, accumulate);
          const e = relErr(d.f32(dy), want);
          assert(e < 1e-5, `gemmMixed ${dtype} transB=${transB} scaled=${scaled} acc=${accumulate}: rel err ${e}`);
          worst = Math.max(worst, e);
          cases++;
        }
    lines.push(`${cases} cases ${m}x${n}x${k} (f32/bf16/f16/f8_e4m3 × layouts × block scales) worst ${fmt(worst)}`);
    // tensor-core precisions on a bf16 weight
    const x = randF32(m * k, r);
    const w = randomStored("bf16", n * k, r);
    const want = new Float32Array(m * n);
    native.gemmMixedRef(x, w, want, m, n, k, "bf16", true, null, false);
    for (const [p, tol] of [
      ["tf32", 5e-3],
      ["bf16", 2e-2],
    ] as const) {
      const dy = d.out(m * n * 4);
      d.cu.cudaGemmMixed(d.up(x), d.up(w), dy, m, n, k, "bf16", true, null, false, p);
      const e = relErr(d.f32(dy), want);
      assert(e < tol, `gemmMixed bf16 weight, ${p}: rel err ${e}`);
      lines.push(`${p} ${fmt(e)}`);
    }
    return lines.join("; ");
  });
}

function deltaInputs(B: number, T: number, H: number, dk: number, dv: number, r: () => number) {
  const rows = B * T * H;
  const q = randF32(rows * dk, r);
  const k = randF32(rows * dk, r);
  // as Qwen3-Next: q and k L2-normalised per head, q scaled by dk^-½; decay e^g < 1; β in (0, 1)
  native.l2NormF32Ref(q, q, rows, dk, 1e-6);
  native.l2NormF32Ref(k, k, rows, dk, 1e-6);
  for (let i = 0; i < q.length; i++) q[i] /= Math.sqrt(dk);
  const v = randF32(rows * dv, r);
  const g = Float32Array.from({ length: rows }, () => -Math.log1p(Math.exp(2 * r())) * 0.5);
  const beta = Float32Array.from({ length: rows }, () => 1 / (1 + Math.exp(-4 * r())));
  return { q, k, v, g, beta };
}

/** Gated DeltaNet pieces: causal conv1d + SiLU and the gated delta rule (token recurrence). */
export async function checkDeltaNet(seed: number): Promise<string> {
  return withDev((d) => {
    const r = rng(seed);
    const lines: string[] = [];
    {
      const [B, T, C, K] = [2, 37, 67, 4];
      const x = randF32(B * T * C, r, 2);
      const w = randF32(C * K, r, 0.5);
      const want = new Float32Array(B * T * C);
      native.causalConv1dSiluF32Ref(x, w, want, B, T, C, K);
      const dout = d.out(B * T * C * 4);
      d.cu.cudaCausalConv1dSiluF32(d.up(x), d.up(w), dout, B, T, C, K);
      lines.push(within(`causalConv1dSilu ${B}x${T}x${C} K=${K}`, d.f32(dout), want, 1e-5, 2e-6));
    }
    for (const [B, T, H, dk, dv] of [
      [2, 41, 3, 19, 45],
      [1, 96, 2, 128, 128],
    ]) {
      const { q, k, v, g, beta } = deltaInputs(B, T, H, dk, dv, r);
      const want = new Float32Array(B * T * H * dv);
      native.gatedDeltaRuleF32Ref(q, k, v, g, beta, want, B, T, H, dk, dv);
      const cpu = new Float32Array(B * T * H * dv);
      native.gatedDeltaRuleRecurrentF32(q, k, v, g, beta, cpu, B, T, H, dk, dv);
      const dq = d.up(q);
      const dk_ = d.up(k);
      const dg = d.up(g);
      const db = d.up(beta);
      const dout = d.out(want.byteLength);
      d.cu.cudaGatedDeltaRuleRecurrentF32(dq, dk_, d.up(v), dg, db, dout, B, T, H, dk, dv);
      const got = d.f32(dout);
      const e = relErr(got, want);
      const eCpu = relErr(cpu, want);
      assert(
        e < 1e-5,
        `gatedDeltaRule B=${B} T=${T} H=${H} dk=${dk} dv=${dv}: rel err ${e} (CPU f32 recurrence ${eCpu})`,
      );
      // out = v (in place) gives the same bytes
      const dv_ = d.up(v);
      d.cu.cudaGatedDeltaRuleRecurrentF32(dq, dk_, dv_, dg, db, dv_, B, T, H, dk, dv);
      assert(sameBits(d.f32(dv_), got) < 0, "gatedDeltaRule: out = v differs from a separate out");
      lines.push(
        `gatedDeltaRule ${B}x${T}x${H} dk=${dk} dv=${dv} ${fmt(e)} (CPU f32 ${fmt(eCpu)}; in place same bits)`,
      );
    }
    return lines.join("; ");
  });
}

/** Bad input to the new entry points: typed errors naming the argument, nothing launched. */
export async function checkOpsRejections(): Promise<string> {
  return withDev((d) => {
    const expectThrow = (f: () => unknown, re: RegExp) => {
      try {
        f();
      } catch (e) {
        assert(re.test((e as Error).message), `wrong error: ${(e as Error).message} (wanted ${re})`);
        return;
      }
      throw new Error(`no error for ${re}`);
    };
    const a = d.out(4096);
    const b = d.out(4096);
    expectThrow(() => d.cu.cudaActivationF32("gelu" as ActivationKind, a, b), /activation kind 'gelu' is not one of/);
    expectThrow(
      () => d.cu.cudaLayerNormF32(a, d.cu.cudaView(b, 0, 8), null, b, 4, 16, 1e-5),
      /cudaLayerNormF32: weight: CudaBuffer holds 8 bytes, needs 64/,
    );
    expectThrow(
      () => d.cu.cudaL2NormF32(a, d.cu.cudaView(a, 4, 256), 4, 16, 1e-6),
      /cudaL2NormF32: out and x overlap without starting at the same byte/,
    );
    expectThrow(() => d.cu.cudaRopeF32(a, b, b, b, 1, 1, 8, 5), /rotaryDim must be even/);
    expectThrow(
      () => d.cu.cudaGemmMixed(a, d.cu.cudaView(b, 1, 1024), d.out(64), 2, 8, 8, "bf16"),
      /cudaGemmMixed: w must start at a multiple of 2 bytes/,
    );
    expectThrow(() => d.cu.cudaDecodeToF32(a, "f8" as WeightDtype, b, 4), /dtype must be/);
    expectThrow(() => d.cu.cudaCausalConv1dSiluF32(a, b, a, 1, 4, 8, 3), /out and x must not overlap/);
    expectThrow(
      () => d.cu.cudaGatedDeltaRuleRecurrentF32(a, a, a, a, a, b, 1, 1, 1, 300, 1),
      /kDim up to 256 on the GPU/,
    );
    // the attention options go through the parser the CPU kernel uses (attention_args.h)
    expectThrow(
      () => d.cu.cudaAttentionF32(a, a, a, b, { batch: 1, seqLen: 2, numHeads: 6, numKvHeads: 4, headDim: 8 }),
      /cudaAttentionF32: numHeads must be a multiple of numKvHeads/,
    );
    expectThrow(
      () => d.cu.cudaAttentionF32(a, a, a, b, { batch: 1, seqLen: 2, numHeads: 2, headDim: 8, window: 1.5 }),
      /cudaAttentionF32: window must be an integer/,
    );
    return "typed errors: bad kind/dtype, short weight, partial overlap, odd rotaryDim, misaligned weight, aliased conv, kDim > 256, attention options";
  });
}

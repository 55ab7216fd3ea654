// GPU checks of the per-layer MoE statistics helpers (src/cuda/moe_stats.cu) against their scalar
// references below: the row gather, the per-block Hessian normalisation (exact) (with and without Llama 4's per-row scale; exact, the same one
// f32 product), the absolute maximum (exact, NaN shows) and per-row f64 dot products (1e-12
// relative: only the summation order differs). Bad indices are a RangeError naming the position.
// Run by bench/gpu/check.ts on the GPU machine (and cuda.test.ts on a CUDA build).

import { assert, randF32, rng, withDev } from "./cuda_checks.ts";

export function gatherRowsRef(
  x: Float32Array,
  cols: number,
  index: Int32Array,
  scale: Float32Array | null,
): Float32Array {
  const out = new Float32Array(index.length * cols);
  for (let i = 0; i < index.length; i++)
    for (let c = 0; c < cols; c++) {
      const v = x[index[i] * cols + c];
      out[i * cols + c] = scale ? Math.fround(v * scale[i]) : v;
    }
  return out;
}

export function absMaxRef(x: Float32Array): number {
  let m = 0;
  for (const v of x) m = Math.max(m, Math.abs(v));
  return m;
}

export function rowDotRef(a: Float32Array, b: Float32Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += a[r * cols + c] * b[r * cols + c];
    out[r] = s;
  }
  return out;
}

export function scaleBlocksRef(src: Float32Array, blocks: number, len: number, scale: Float64Array): Float32Array {
  return Float32Array.from(src.subarray(0, blocks * len), (v, i) => v * scale[Math.floor(i / len)]);
}

const sameF32 = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

export async function checkMoeStats(seed: number): Promise<string> {
  return withDev((d) => {
    const r = rng(seed);
    const out: string[] = [];
    const xRows = 301;
    const cols = 67;
    const x = randF32(xRows * cols, r, 3);
    const dx = d.up(x);
    // repeated and unordered rows, an empty gather
    for (const n of [0, 1, 97, 1000]) {
      const index = Int32Array.from({ length: n }, () => Math.floor((r() + 0.5) * xRows) % xRows);
      const scale = randF32(n, r, 1);
      for (const s of [null, scale]) {
        const dOut = d.out(Math.max(4, n * cols * 4));
        d.cu.cudaGatherRowsF32(dx, xRows, cols, d.up(n ? index : new Int32Array(1)), n, s ? d.up(s) : null, dOut);
        const got = d.f32(dOut).subarray(0, n * cols);
        assert(sameF32(got, gatherRowsRef(x, cols, index, s)), `gatherRows n=${n} scaled=${!!s}: differs`);
      }
    }
    out.push("gather exact");
    // an index past x: RangeError naming the position
    const bad = Int32Array.of(0, 5, xRows, 7);
    let err = "";
    try {
      d.cu.cudaGatherRowsF32(dx, xRows, cols, d.up(bad), 4, null, d.out(4 * cols * 4));
    } catch (e) {
      err = (e as Error).message;
    }
    assert(/index\[2\]/.test(err), `gatherRows with a bad index: expected a RangeError naming index[2], got "${err}"`);
    out.push("bad index rejected");
    // absmax: exact, negative extremes, NaN
    for (const n of [1, 1000, 1 << 20]) {
      const v = randF32(n, r, 5);
      v[Math.floor(n / 2)] = -7.25;
      const got = d.cu.cudaAbsMaxF32(d.up(v), n);
      assert(got === absMaxRef(v), `absMax n=${n}: ${got} vs ${absMaxRef(v)}`);
    }
    const nan = randF32(4097, r, 1);
    nan[4000] = Number.NaN;
    assert(Number.isNaN(d.cu.cudaAbsMaxF32(d.up(nan), nan.length)), "absMax with a NaN: not NaN");
    assert(d.cu.cudaAbsMaxF32(d.up(new Float32Array(4)), 4) === 0, "absMax of zeros");
    out.push("absmax exact");
    // row dots: odd sizes, a wide row
    let worst = 0;
    for (const [rows, c] of [
      [37, 133],
      [3, 20_001],
    ]) {
      const a = randF32(rows * c, r, 2);
      const b = randF32(rows * c, r, 2);
      const got = d.cu.cudaRowDotF32(d.up(a), d.up(b), rows, c);
      const want = rowDotRef(a, b, rows, c);
      for (let i = 0; i < rows; i++) {
        const e = Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), 1e-30);
        worst = Math.max(worst, e);
      }
    }
    assert(worst < 1e-12, `rowDot: rel err ${worst}`);
    // scaled blocks: exact (one f64 product rounded to f32), in place too
    const blocks = 5;
    const len = 333;
    const src = randF32(blocks * len, r, 100);
    const scale = Float64Array.of(2 / 3, 1e-7, 0, 2 / 1234.5, 7);
    const dSrc = d.up(src);
    const dDst = d.out(blocks * len * 4);
    d.cu.cudaScaleBlocksF32(dSrc, dDst, blocks, len, scale);
    assert(sameF32(d.f32(dDst), scaleBlocksRef(src, blocks, len, scale)), "scaleBlocks: differs");
    d.cu.cudaScaleBlocksF32(dSrc, dSrc, blocks, len, scale);
    assert(sameF32(d.f32(dSrc), scaleBlocksRef(src, blocks, len, scale)), "scaleBlocks in place: differs");
    out.push("scale blocks exact");
    out.push(`rowdot ${worst.toExponential(1)}`);
    return out.join(", ");
  });
}

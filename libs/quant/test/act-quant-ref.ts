// Independent references for activation fake-quantization: rounding by searching the e4m3 / e2m1
// value grids in float64 (nearest value, ties to the even code, |v| clamped to the grid's max)
// instead of the bit arithmetic of @moeq/tensor, in vLLM's f32 operation order. Used by
// libs/quant's tests and by the evaluator's direct one-layer computation.

const f = Math.fround;

/** Finite non-negative e4m3fn values by code 0..0x7e, from the format definition. */
export const E4M3_POS = Array.from({ length: 0x7f }, (_, c) => {
  const e = c >> 3;
  const m = c & 7;
  return e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7);
});
export const E2M1_POS = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

/** Nearest grid value in float64, ties to the even index, |v| clamped to the grid's max. */
export const nearest = (grid: readonly number[], v: number): { idx: number; value: number } => {
  const a = Math.min(Math.abs(v), grid[grid.length - 1]!);
  let best = 0;
  for (let i = 1; i < grid.length; i++) {
    const d = Math.abs(grid[i]! - a) - Math.abs(grid[best]! - a);
    if (d < 0 || (d === 0 && i % 2 === 0 && best % 2 === 1)) best = i;
  }
  return { idx: best, value: v < 0 ? -grid[best]! : grid[best]! };
};
export const refE4m3 = (v: number) => nearest(E4M3_POS, v).value;
export const refE2m1 = (v: number) => nearest(E2M1_POS, v).value;

/** static FP8 per tensor with scale s */
export const refStatic = (x: ArrayLike<number>, s: number): Float64Array => {
  const inv = f(1 / s);
  return Float64Array.from(x, (v) => f(refE4m3(f(v * inv)) * s));
};

/** FP8 with one scale per row and `group` columns, scaleOf(group absmax) */
export const refGroups = (
  x: ArrayLike<number>,
  rows: number,
  cols: number,
  group: number,
  scaleOf: (a: number) => number,
): Float64Array => {
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++)
    for (let c0 = 0; c0 < cols; c0 += group) {
      const idx: number[] = [];
      for (let c = c0; c < Math.min(cols, c0 + group); c++) idx.push(r * cols + c);
      const s = scaleOf(Math.max(...idx.map((i) => Math.abs(x[i]!))));
      for (const i of idx) out[i] = f(refE4m3(f(x[i]! / s)) * s);
    }
  return out;
};

/** NVFP4 with global scale g (2688/amax): block scale e4m3(g·amax/6), values e2m1(x·k)·sf/g */
export const refNvfp4 = (x: ArrayLike<number>, rows: number, cols: number, g: number): Float64Array => {
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++)
    for (let b = 0; b < cols / 16; b++) {
      const base = r * cols + b * 16;
      let amax = 0;
      for (let j = 0; j < 16; j++) amax = Math.max(amax, Math.abs(x[base + j]!));
      const sf = refE4m3(f(g * f(amax * f(1 / 6))));
      const k = sf === 0 ? 0 : f(1 / f(sf * f(1 / g)));
      for (let j = 0; j < 16; j++) out[base + j] = f(refE2m1(f(x[base + j]! * k)) * f(sf / g));
    }
  return out;
};

// Llama 4's attention temperature tuning on NoPE layers: queries far into a long context are
// scaled up by log1p(floor((pos + 1) / floorScale))·attnScale + 1 (1 for pos + 1 < floorScale).
export function applyQTemperature(
  q: Float32Array,
  positions: Int32Array,
  rowWidth: number,
  t: { readonly floorScale: number; readonly attnScale: number },
): void {
  for (let r = 0; r < positions.length; r++) {
    // f32 throughout, as torch does on the float32 cache_position
    const steps = Math.floor(Math.fround(Math.fround(positions[r] + 1) / t.floorScale));
    const s = Math.fround(Math.fround(Math.fround(Math.log1p(steps)) * t.attnScale) + 1);
    if (s === 1) continue;
    for (let c = 0; c < rowWidth; c++) q[r * rowWidth + c] = Math.fround(q[r * rowWidth + c] * s);
  }
}

// Validation of an integer quantizer's result before it is packed: anything a reader could
// not decode back to the quantizer's own dequantized weights is refused here, by module name.
import { FormatError } from "./errors.ts";
import type { IntQuantized } from "./types.ts";

export interface IntLayout {
  readonly bits: 4 | 8;
  readonly nGroups: number;
  /** group_size as the configs write it: −1 for one group per row. */
  readonly groupSize: number;
  /** true when gIdx is not simply ⌊c / groupSize⌋ (act-order with static groups off). */
  readonly needsGIdx: boolean;
}

export const intDequant = (code: number, zero: number, scale: number): number => Math.fround((code - zero) * scale);

export const checkIntModule = (format: string, name: string, w: IntQuantized): IntLayout => {
  const { rows, cols, result: r } = w;
  const fail = (reason: string): never => {
    throw new FormatError({ format, reason: `${name}: ${reason}` });
  };
  if (r.bits !== 4 && r.bits !== 8) fail(`${r.bits}-bit codes are not supported (4 or 8)`);
  const bits = r.bits as 4 | 8;
  const maxCode = (1 << bits) - 1;
  if (r.codes.length !== rows * cols) fail(`${r.codes.length} codes for shape [${rows}, ${cols}]`);
  if (r.scales.length === 0 || r.scales.length % rows !== 0) fail(`${r.scales.length} scales for ${rows} rows`);
  const nGroups = r.scales.length / rows;
  if (r.zeros.length !== r.scales.length) fail(`${r.zeros.length} zero points for ${r.scales.length} scales`);
  if (r.gIdx.length !== cols) fail(`g_idx has ${r.gIdx.length} entries for ${cols} input columns`);
  const groupSize = r.groupSize > 0 ? r.groupSize : -1;
  if ((groupSize > 0 ? Math.ceil(cols / groupSize) : 1) !== nGroups) {
    fail(`group size ${r.groupSize} does not give ${nGroups} groups over ${cols} columns`);
  }
  let needsGIdx = false;
  for (let c = 0; c < cols; c++) {
    const g = r.gIdx[c]!;
    if (!Number.isInteger(g) || g < 0 || g >= nGroups) fail(`g_idx[${c}] = ${g} is not a group in 0..${nGroups - 1}`);
    if (g !== (groupSize > 0 ? Math.floor(c / groupSize) : 0)) needsGIdx = true;
  }
  const mid = 1 << (bits - 1);
  for (let i = 0; i < r.zeros.length; i++) {
    const z = r.zeros[i]!;
    if (!Number.isInteger(z) || z < 0 || z > maxCode)
      fail(`zero point ${z} at ${i} is not an integer in 0..${maxCode}`);
    if (r.symmetric && z !== mid) fail(`symmetric result has zero point ${z} at ${i}, expected ${mid}`);
    const s = r.scales[i]!;
    if (!Number.isFinite(s)) fail(`scale ${s} at ${i} is not finite`);
  }
  // read once: a producer may compute it on access rather than keep every module's copy
  const dequant = r.dequant;
  if (dequant.length !== rows * cols) fail(`dequant has ${dequant.length} values for shape [${rows}, ${cols}]`);
  for (let row = 0; row < rows; row++) {
    for (let c = 0; c < cols; c++) {
      const i = row * cols + c;
      const code = r.codes[i]!;
      if (!Number.isInteger(code) || code < 0 || code > maxCode)
        fail(`code ${code} at [${row}, ${c}] does not fit ${bits} bits`);
      const gi = row * nGroups + r.gIdx[c]!;
      const d = intDequant(code, r.zeros[gi]!, Math.fround(r.scales[gi]!));
      if (!Object.is(d, Math.fround(dequant[i]!)) && !(d === 0 && dequant[i] === 0)) {
        fail(
          `the quantizer's dequant ${dequant[i]} at [${row}, ${c}] is not (code − zero)·scale = ${d}; a reader could not reproduce it`,
        );
      }
    }
  }
  return { bits, nGroups, groupSize, needsGIdx };
};

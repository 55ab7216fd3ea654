// Loads the GPTQ oracle cases from ../shared/fixtures/gptq (beside the checkout) with a minimal
// safetensors reader, independent of the product's reader.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const sharedDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "shared");
export const gptqFixtureDir = join(sharedDir, "fixtures", "gptq");

export interface GptqCase {
  name: string;
  rows: number;
  cols: number;
  bits: number;
  group: number;
  sym: boolean;
  actorder: boolean;
  damp: number;
  blocksize: number;
  proxy_loss: number;
  rtn_proxy_loss: number;
  dead?: number[];
}

type Typed = Float32Array | Float64Array | Int32Array | Uint8Array | Uint16Array;

export function readSafetensors(path: string): Record<string, { dtype: string; shape: number[]; data: Typed }> {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString("utf8")) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLen;
  const out: Record<string, { dtype: string; shape: number[]; data: Typed }> = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const bytes = buf.subarray(base + t.data_offsets[0], base + t.data_offsets[1]);
    const copy = new Uint8Array(bytes).buffer; // aligned copy
    const ctor = {
      F32: Float32Array,
      F64: Float64Array,
      I32: Int32Array,
      U8: Uint8Array,
      U16: Uint16Array,
      I16: Uint16Array,
    }[t.dtype];
    if (!ctor) throw new Error(`${path}: ${name} has unsupported dtype ${t.dtype}`);
    out[name] = { dtype: t.dtype, shape: t.shape, data: new ctor(copy) };
  }
  return out;
}

export function loadGptqCases(): Array<{ c: GptqCase; t: ReturnType<typeof readSafetensors> }> {
  const cases = JSON.parse(readFileSync(join(gptqFixtureDir, "cases.json"), "utf8")) as GptqCase[];
  return cases.map((c) => ({ c, t: readSafetensors(join(gptqFixtureDir, `${c.name}.safetensors`)) }));
}

/**
 * Codes vs the oracle's, row by row in quantization order. The oracle keeps f64 scales, ours are
 * rounded to f32 first. In a symmetric scheme (scale = 2·max/maxq) a group's −max value sits on
 * the tie x/scale = −2^(b−1) + ½: the f64 scale rounds it half-to-even to code 0, a scale rounded
 * up by one ulp to code 1, and GPTQ then carries a different error through the rest of that row.
 * Such a row (first mismatch: oracle 0, ours 1) is a candidate tie, returned with the quantization
 * position of that first mismatch so the caller can check the value really is on the boundary
 * (`tieOffset`); the share of identical codes is over the other rows.
 */
export function codesVsOracle(
  ours: ArrayLike<number>,
  oracle: (i: number) => number,
  rows: number,
  cols: number,
  sym: boolean,
  perm: ArrayLike<number>,
) {
  let same = 0;
  let counted = 0;
  const ties: { row: number; position: number }[] = [];
  for (let r = 0; r < rows; r++) {
    let first = -1;
    let rowSame = 0;
    for (let j = 0; j < cols; j++) {
      const i = r * cols + perm[j];
      if (ours[i] === oracle(i)) rowSame++;
      else if (first < 0) first = j;
    }
    const i = r * cols + perm[first];
    if (first >= 0 && sym && oracle(i) === 0 && ours[i] === 1) ties.push({ row: r, position: first });
    else {
      same += rowSame;
      counted += cols;
    }
  }
  return { same: counted === 0 ? 1 : same / counted, tieRows: ties.length, ties };
}

/** Lower Cholesky factor of a symmetric positive definite n×n matrix (row-major, f64). */
function cholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(s > 0)) throw new Error(`cholesky: matrix not positive definite at ${i}`);
        l[i * n + i] = Math.sqrt(s);
      } else l[i * n + j] = s / l[j * n + j];
    }
  return l;
}

/**
 * Distance of a candidate tie from its rounding boundary, in code units: the weight GPTQ
 * quantizes at quantization position `position` of `row` is recomputed in f64 by replaying the
 * oracle's algorithm (gptq_ref.py: dead columns zeroed, its permutation, dampening, the upper
 * Cholesky factor U of H⁻¹, and the error feedback x_k −= (x_j − q_j)/U_jj · U_jk) with the
 * oracle's own dequantized values for the earlier positions — identical to ours there, since this
 * is the row's first mismatch. Returns |x/scale + zero − (oracle code + ½)|, ~1e-7 for a value on
 * the boundary whose side depends on the scale's last bit.
 */
export function tieOffset(
  c: GptqCase,
  t: ReturnType<typeof readSafetensors>,
  row: number,
  position: number,
  oracleCode: number,
): number {
  const n = c.cols;
  const W = t.W.data as Float32Array;
  const H = t.H.data as Float32Array;
  const Q = t.Q.data as Float32Array;
  const S = t.scale.data as Float32Array;
  const Z = t.zero.data as Float32Array;
  const perm = t.perm.data as Int32Array;
  const gIdx = t.g_idx.data as Int32Array;
  const nG = t.scale.shape[1];
  const dead = (k: number) => H[k * n + k] === 0;
  // H permuted, dead diagonal set to 1, dampened by damp · mean(diag)
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j] = H[perm[i] * n + perm[j]];
  for (let i = 0; i < n; i++) if (dead(perm[i])) h[i * n + i] = 1;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i] / n;
  for (let i = 0; i < n; i++) h[i * n + i] += c.damp * mean;
  // H⁻¹ = L⁻ᵀ L⁻¹ from H = L Lᵀ; then U = chol(H⁻¹)ᵀ (upper, H⁻¹ = Uᵀ U)
  const l = cholesky(h, n);
  const li = new Float64Array(n * n); // L⁻¹, lower
  for (let j = 0; j < n; j++) {
    li[j * n + j] = 1 / l[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= l[i * n + k] * li[k * n + j];
      li[i * n + j] = s / l[i * n + i];
    }
  }
  const hinv = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = Math.max(i, j); k < n; k++) s += li[k * n + i] * li[k * n + j];
      hinv[i * n + j] = s;
    }
  const u = cholesky(hinv, n); // lower factor; U[j][k] = u[k][j]
  const x = Float64Array.from({ length: n }, (_, j) => (dead(perm[j]) ? 0 : W[row * n + perm[j]]));
  for (let j = 0; j < position; j++) {
    const e = (x[j] - Q[row * n + perm[j]]) / u[j * n + j];
    for (let k = j + 1; k < n; k++) x[k] -= e * u[k * n + j];
  }
  const g = row * nG + gIdx[perm[position]];
  return Math.abs(x[position] / S[g] + Z[g] - (oracleCode + 0.5));
}

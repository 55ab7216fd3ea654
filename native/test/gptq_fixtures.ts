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
 * Returns the share of identical codes over the other rows and the number of such tie rows.
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
  let tieRows = 0;
  for (let r = 0; r < rows; r++) {
    let first = -1;
    let rowSame = 0;
    for (let j = 0; j < cols; j++) {
      const i = r * cols + perm[j];
      if (ours[i] === oracle(i)) rowSame++;
      else if (first < 0) first = i;
    }
    if (first >= 0 && sym && oracle(first) === 0 && ours[first] === 1) tieRows++;
    else {
      same += rowSame;
      counted += cols;
    }
  }
  return { same: counted === 0 ? 1 : same / counted, tieRows };
}

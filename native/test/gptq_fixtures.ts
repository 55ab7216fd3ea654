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

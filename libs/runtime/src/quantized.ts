// Reading a quantizer's outputs back (codes, scales, zero points, column → group map) and
// dequantizing them exactly as the quantizer defines it: scale·(code − zero).
import type { EventOf } from "@moeq/contracts";
import { StageError } from "./errors.ts";
import type { QuantTarget } from "./targets.ts";
import type { TensorReader } from "./tensors.ts";

export interface IntOutputs {
  readonly codes: Uint8Array;
  readonly scales: Float32Array;
  readonly zeros: Int32Array;
  readonly gIdx: Int32Array;
}

export function dequantizeInt(q: IntOutputs, rows: number, cols: number): Float32Array {
  const nG = q.scales.length / rows;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const g = r * nG + q.gIdx[c];
      out[r * cols + c] = q.scales[g] * (q.codes[r * cols + c] - q.zeros[g]);
    }
  return out;
}

export function readIntOutputs(reader: TensorReader, ev: EventOf<"ExpertQuantized">, t: QuantTarget): IntOutputs {
  const o = ev.payload.outputs;
  const src = `ExpertQuantized ${t.layer}/${t.expert}/${t.proj}`;
  for (const k of ["codes", "scales", "zeros", "g_idx"])
    if (!o[k]) throw new StageError({ stage: "packer", message: `${src}: output '${k}' is missing`, permanent: true });
  const q = {
    codes: reader.bytes(o.codes, `${src} codes`),
    scales: reader.f32(o.scales, `${src} scales`),
    zeros: reader.i32(o.zeros, `${src} zeros`),
    gIdx: reader.i32(o.g_idx, `${src} g_idx`),
  };
  const nG = q.scales.length / t.rows;
  if (
    q.codes.length !== t.rows * t.cols ||
    q.gIdx.length !== t.cols ||
    q.zeros.length !== q.scales.length ||
    !Number.isInteger(nG)
  )
    throw new StageError({
      stage: "packer",
      message: `${src}: output shapes do not fit [${t.rows}, ${t.cols}]`,
      permanent: true,
    });
  for (let c = 0; c < t.cols; c++)
    if (q.gIdx[c] < 0 || q.gIdx[c] >= nG)
      throw new StageError({
        stage: "packer",
        message: `${src}: g_idx[${c}] = ${q.gIdx[c]} outside [0, ${nG})`,
        permanent: true,
      });
  return q;
}

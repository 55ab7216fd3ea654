// Builders shared by the format tests.
import { f32Tensor, type Tensor } from "@moeq/tensor";
import type { IntQuantized, QuantizedModule, QuantizedWeight } from "../src/index.ts";

/** An integer result written by hand: dequant = fround((code − zero)·scale). */
export const handInt = (
  rows: number,
  cols: number,
  codes: number[],
  opts: { bits: 4 | 8; scales?: number[]; zeros?: number[]; groupSize?: number; gIdx?: number[]; symmetric?: boolean },
): IntQuantized => {
  const nGroups = opts.scales ? opts.scales.length / rows : 1;
  const groupSize = opts.groupSize ?? -1;
  const mid = 1 << (opts.bits - 1);
  const scales = Float32Array.from(opts.scales ?? new Array(rows).fill(1));
  const zeros = Int32Array.from(opts.zeros ?? new Array(rows * nGroups).fill(mid));
  const gIdx = Int32Array.from(
    opts.gIdx ?? Array.from({ length: cols }, (_, c) => (nGroups === 1 ? 0 : Math.floor(c / groupSize))),
  );
  const dequant = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const g = r * nGroups + gIdx[c]!;
      dequant[r * cols + c] = Math.fround((codes[r * cols + c]! - zeros[g]!) * scales[g]!);
    }
  return {
    kind: "int",
    rows,
    cols,
    result: {
      codes: Uint8Array.from(codes),
      scales,
      zeros,
      gIdx,
      dequant,
      bits: opts.bits,
      groupSize,
      symmetric: opts.symmetric ?? opts.zeros === undefined,
    },
  };
};

export const mod = (name: string, weight: QuantizedWeight, extra: Partial<QuantizedModule> = {}): QuantizedModule => ({
  name,
  weight,
  ...extra,
});

export const words = (t: Tensor | undefined): number[] => {
  if (!t) throw new Error("missing tensor");
  const d = t.data.slice();
  return Array.from(new Uint32Array(d.buffer, 0, d.byteLength / 4));
};

export const f32 = (t: Tensor | undefined): number[] => {
  if (!t) throw new Error("missing tensor");
  return Array.from(new Float32Array(t.data.slice().buffer));
};

export const passthroughFor = (): Map<string, Tensor> =>
  new Map([
    ["model.embed_tokens.weight", f32Tensor(Float32Array.from([1, 2, 3, 4]), [2, 2])],
    ["lm_head.weight", f32Tensor(Float32Array.from([5, 6, 7, 8]), [2, 2])],
    ["model.norm.weight", f32Tensor(Float32Array.from([1, 1]), [2])],
  ]);

export const sameBits = (a: Float32Array, b: ArrayLike<number>): boolean => {
  if (a.length !== b.length) return false;
  const bb = Float32Array.from(b);
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(bb.buffer));
};

// packedModules: one module per whole-tensor target; DBRX-style row slices (q/k/v inside one
// Wqkv) stacked back in row order, and refused with a typed error when they leave a gap or do
// not share one group layout.
import type { WeightRole } from "@moeq/models";
import { describe, expect, it } from "vitest";
import type { IntOutputs } from "../src/quantized.ts";
import { packedModules } from "../src/target-weights.ts";
import type { QuantTarget } from "../src/targets.ts";

const cols = 4;
function slice(proj: string, start: number, rows: number, totalRows: number): QuantTarget {
  const tensor = "transformer.blocks.0.norm_attn_norm.attn.Wqkv.weight";
  const role: WeightRole = {
    tensor,
    layer: 0,
    expert: null,
    module: "attention",
    projection: proj as WeightRole["projection"],
    shape: [rows, cols],
    rowSlice: { start, totalRows },
  };
  return {
    layer: 0,
    expert: 0,
    proj: `attn.${proj}`,
    tensor,
    module: "attention",
    rows,
    cols,
    role,
    extracted: true,
    packed: { module: tensor.slice(0, -7), rowOffset: start, rows },
  };
}
/** codes = row index within the whole module (so the stacking order is visible), one group of 2 columns per row half */
function outputs(t: QuantTarget, gIdx = [0, 0, 1, 1]): IntOutputs {
  const codes = new Uint8Array(t.rows * cols);
  for (let r = 0; r < t.rows; r++) codes.fill(t.packed.rowOffset + r, r * cols, (r + 1) * cols);
  return {
    codes,
    scales: Float32Array.from({ length: t.rows * 2 }, (_, i) => t.packed.rowOffset * 2 + i),
    zeros: new Int32Array(t.rows * 2),
    gIdx: Int32Array.from(gIdx),
  };
}

describe("packedModules", () => {
  it("stacks row slices given out of order into their fused module", () => {
    const ts = [slice("v_proj", 5, 2, 7), slice("q_proj", 0, 3, 7), slice("k_proj", 3, 2, 7)];
    const [m, ...rest] = packedModules(ts, (t) => outputs(t));
    expect(rest).toHaveLength(0);
    expect(m.module).toBe("transformer.blocks.0.norm_attn_norm.attn.Wqkv");
    expect([m.rows, m.cols]).toEqual([7, 4]);
    expect(Array.from(m.q.codes.filter((_, i) => i % cols === 0))).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(Array.from(m.q.scales)).toEqual(Array.from({ length: 14 }, (_, i) => i));
    expect(m.targets.map((t) => t.proj)).toEqual(["attn.q_proj", "attn.k_proj", "attn.v_proj"]);
  });

  it("refuses a gap or a different group layout, naming the module", () => {
    expect(() => packedModules([slice("q_proj", 0, 3, 7), slice("v_proj", 5, 2, 7)], (t) => outputs(t))).toThrow(
      /Wqkv: rows 3..4 are not quantized/,
    );
    expect(() =>
      packedModules([slice("q_proj", 0, 3, 5), slice("k_proj", 3, 2, 5)], (t) =>
        outputs(t, t.proj === "attn.k_proj" ? [0, 1, 1, 1] : [0, 0, 1, 1]),
      ),
    ).toThrow(/Wqkv: attn.k_proj does not share the group layout/);
  });
});

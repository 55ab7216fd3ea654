// A redelivered quantize-batch item redoes only the (expert, projection) pairs without an
// ExpertQuantized event (no GPU needed for this part; the batched GPTQ itself is checked on the GPU
// machine by native/bench/gpu/run.sh equiv against --device cpu).
import type { QuantizeBatchWork, TensorDescriptor } from "@moeq/contracts";
import { describe, expect, it } from "vitest";
import { pendingProjections } from "../src/batch.ts";

const desc: TensorDescriptor = { dtype: "f32", shape: [0], loc: { kind: "inline", data: new Uint8Array(0) } };
const expert = (e: number) => ({
  expert: e,
  tokens: 3,
  weightMass: 1.5,
  projections: [
    { proj: "gate_proj", tensor: `m.${e}.gate_proj.weight`, rowStart: 0, rows: 4 },
    { proj: "up_proj", tensor: `m.${e}.up_proj.weight`, rowStart: 4, rows: 4 },
  ],
});
const batch: QuantizeBatchWork = {
  layer: 2,
  group: "experts.gate_up",
  weight: desc,
  hessian: desc,
  experts: [expert(0), expert(5)],
  weightDtype: "bf16",
  algorithm: "gptq",
  options: {},
};

describe("pendingProjections", () => {
  it("lists every projection of a fresh batch, in expert order", () => {
    expect(pendingProjections(batch, () => false).map((t) => `${t.expert.expert}/${t.projection.proj}`)).toEqual([
      "0/gate_proj",
      "0/up_proj",
      "5/gate_proj",
      "5/up_proj",
    ]);
  });
  it("skips what the log already has (keys layer/expert/proj)", () => {
    const done = new Set(["2/0/gate_proj", "2/0/up_proj", "2/5/up_proj"]);
    expect(pendingProjections(batch, (k) => done.has(k)).map((t) => `${t.expert.expert}/${t.projection.proj}`)).toEqual(
      ["5/gate_proj"],
    );
    expect(pendingProjections(batch, () => true)).toEqual([]);
  });
});

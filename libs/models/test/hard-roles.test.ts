// What the hard architectures expose to the quantizer and the validator: weight roles of MLA,
// the DSA indexer and Gated DeltaNet projections, the expected non-linear tensors, and typed
// errors for configs that cannot describe a model.
import { join } from "node:path";
import {
  buildSpec,
  expectedTensors,
  loadModel,
  ModelConfigError,
  quantizableWeights,
  readConfig,
  weightRoles,
} from "@moeq/models";
import { describe, expect, it } from "vitest";
import { tinyRandom } from "./fixtures.ts";

describe("hard architectures: roles and tensors", { timeout: 60_000 }, () => {
  it("MLA projections are quantizable attention weights; the DSA indexer is listed but not quantized", () => {
    const m = loadModel(join(tinyRandom, "deepseek_v32"));
    try {
      const roles = weightRoles(m.spec).filter((r) => r.layer === 1 && r.expert === null);
      const names = (mod: string) => roles.filter((r) => r.module === mod).map((r) => r.projection);
      expect(names("attention")).toEqual(["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]);
      expect(names("indexer")).toEqual(["wq_b", "wk", "weights_proj"]);
      const kvb = roles.find((r) => r.projection === "kv_b_proj");
      expect(kvb?.shape).toEqual([4 * (16 + 16), 32]);
      const q = new Set(quantizableWeights(m.arch, m.spec).map((r) => r.tensor));
      expect(q.has("model.layers.1.self_attn.kv_b_proj.weight")).toBe(true);
      expect([...q].some((n) => n.includes("indexer"))).toBe(false);
      // every checkpoint tensor is expected (nothing read is left unvalidated) and vice versa
      expect(
        expectedTensors(m.spec)
          .map((t) => t.name)
          .sort(),
      ).toEqual([...m.checkpoint.names()].sort());
    } finally {
      m.close();
    }
  });

  for (const [fixture, projections] of [
    ["qwen3_next", ["in_proj_qkvz", "in_proj_ba", "out_proj"]],
    ["qwen3_5_moe_text", ["in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj"]],
  ] as const)
    it(`${fixture}: DeltaNet projections are listed but kept in bf16 by default; gated attention is quantized`, () => {
      const m = loadModel(join(tinyRandom, fixture));
      try {
        const l0 = weightRoles(m.spec).filter((r) => r.layer === 0 && r.module === "attention");
        expect(l0.map((r) => r.projection)).toEqual(projections);
        const q = quantizableWeights(m.arch, m.spec);
        expect(q.some((r) => r.tensor.includes("linear_attn"))).toBe(false);
        expect(q.filter((r) => r.layer === 1 && r.module === "attention").map((r) => r.projection)).toEqual([
          "q_proj",
          "k_proj",
          "v_proj",
          "o_proj",
        ]);
        expect(q.some((r) => r.module === "experts" && r.layer === 0)).toBe(true);
        const t = expectedTensors(m.spec)
          .filter((e) => e.role === "linear_attention")
          .map((e) => e.name);
        expect(t).toContain("model.layers.0.linear_attn.conv1d.weight");
        expect(t).toContain("model.layers.0.linear_attn.A_log");
        expect(
          expectedTensors(m.spec)
            .map((e) => e.name)
            .sort(),
        ).toEqual([...m.checkpoint.names()].sort());
      } finally {
        m.close();
      }
    });

  it("MiMo-V2-Flash: sliding layers double the KV heads, carry sinks and a window; full layers do not", () => {
    const { spec } = buildSpec(readConfig(join(tinyRandom, "mimo_v2_flash")));
    const [full, swa] = [spec.layers[0].attention, spec.layers[1].attention];
    if (full.kind !== "standard" || swa.kind !== "standard") throw new Error("standard attention expected");
    expect([full.numKvHeads, swa.numKvHeads]).toEqual([2, 4]);
    expect(full.sinks).toBeUndefined();
    expect(swa.sinks).toBe("model.layers.1.self_attn.attention_sink_bias");
    expect([full.window ?? 0, swa.window]).toEqual([0, 128]);
    expect(full.rope?.theta).toBe(5e6);
    expect(swa.rope?.theta).toBe(1e4);
    // int(16 · 0.334) = 5: six rotated dims, frequencies over 5
    expect([swa.rope?.rotaryDim, swa.rope?.freqDim]).toEqual([6, 5]);
  });

  it("configs that cannot describe the model are ModelConfigErrors naming the field", () => {
    const cfg = (name: string) => readConfig(join(tinyRandom, name));
    const bad = (c: Record<string, unknown>, field: RegExp) => {
      let err: unknown;
      try {
        buildSpec(c);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ModelConfigError);
      expect(String((err as Error).message)).toMatch(field);
    };
    bad({ ...cfg("qwen3_next"), linear_num_value_heads: 3 }, /linear_num_value_heads/);
    bad({ ...cfg("qwen3_next"), layer_types: ["linear_attention"] }, /layer_types/);
    bad({ ...cfg("deepseek_v3"), mlp_layer_types: ["dense", "moe", "sparse"] }, /mlp_layer_types/);
    bad({ ...cfg("mimo_v2_flash"), layer_types: ["full_attention", "other", "x", "y"] }, /layer_types/);
    bad({ ...cfg("deepseek_v3"), kv_lora_rank: undefined }, /kv_lora_rank/);
  });
});

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { buildSpec, expectedTensors, isQuantizable, loadModel, quantizableWeights, weightRoles } from "@moeq/models";
import { openCheckpoint } from "@moeq/safetensors";
import { describe, expect, it } from "vitest";
import { fixtureDirs, tinyRandom } from "./fixtures.ts";

// Every fixture: a config that fails to build a spec fails its test (never silently left out).
const fixtures = fixtureDirs();

describe("every fixture builds a spec", () => {
  it("there are fixtures to check", () => expect(fixtures.length).toBeGreaterThanOrEqual(20));
  for (const f of fixtures)
    it(`${f.name}: config.json builds a model spec`, () => {
      // a throw here fails the test with buildSpec's own message (the field it could not use)
      const { spec } = buildSpec(JSON.parse(readFileSync(join(f.dir, "config.json"), "utf8")));
      expect(spec.layers.length).toBeGreaterThan(0);
    });
});

describe("expected tensors", () => {
  for (const f of fixtures)
    it(`${f.name}: the spec's tensors are exactly the checkpoint's (apart from an MTP layer)`, () => {
      const m = loadModel(f.dir);
      try {
        const want = expectedTensors(m.spec);
        const names = new Set(m.checkpoint.names());
        for (const t of want) {
          expect(names.has(t.name), t.name).toBe(true);
          expect(m.checkpoint.entry(t.name).shape).toEqual([...t.shape]);
        }
        const expected = new Set(want.map((t) => t.name));
        const extra = [...names].filter((n) => !expected.has(n));
        // GLM keeps its multi-token-prediction layer (index num_hidden_layers) in the checkpoint
        const mtp = `model.layers.${m.spec.layers.length}.`;
        expect(extra.filter((n) => !n.startsWith(mtp))).toEqual([]);
      } finally {
        m.close();
      }
    });
});

describe("quantization predicate", () => {
  const m = loadModel(join(tinyRandom, "qwen2_moe"));
  const { arch, spec } = m;
  m.close();

  it("excludes router, shared-expert gate, norms, biases, embeddings and lm_head", () => {
    for (const n of [
      "model.layers.0.mlp.gate.weight",
      "model.layers.0.mlp.shared_expert_gate.weight",
      "model.layers.0.input_layernorm.weight",
      "model.layers.0.self_attn.q_proj.bias",
      "model.embed_tokens.weight",
      "lm_head.weight",
      "model.norm.weight",
    ])
      expect(isQuantizable(arch, spec, n), n).toBe(false);
  });

  it("includes attention projections, routed experts and the shared expert, with roles", () => {
    expect(isQuantizable(arch, spec, "model.layers.1.self_attn.o_proj.weight")).toBe(true);
    const q = quantizableWeights(arch, spec);
    const e = q.find((r) => r.tensor === "model.layers.2.mlp.experts.5.down_proj.weight");
    expect(e).toMatchObject({ layer: 2, expert: 5, module: "experts", projection: "down_proj", shape: [64, 32] });
    const s = q.find((r) => r.tensor === "model.layers.0.mlp.shared_expert.up_proj.weight");
    expect(s).toMatchObject({
      layer: 0,
      expert: null,
      module: "shared_expert",
      projection: "up_proj",
      shape: [48, 64],
    });
    // 3 layers × (4 attention + 8 experts × 3 + 3 shared)
    expect(q.length).toBe(3 * (4 + 24 + 3));
    expect(weightRoles(spec).length).toBe(q.length);
  });

  it("checkpoint names of quantizable tensors all exist", () => {
    const ck = openCheckpoint(join(tinyRandom, "qwen2_moe"));
    try {
      for (const r of quantizableWeights(arch, spec)) expect(ck.has(r.tensor), r.tensor).toBe(true);
    } finally {
      ck.close();
    }
  });
});

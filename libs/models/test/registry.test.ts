import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  architectureNote,
  architectures,
  buildSpec,
  detectArchitecture,
  loadModel,
  ModelConfigError,
  ModelWeightError,
  summarize,
  supportedModelTypes,
  UnknownArchitectureError,
} from "@moeq/models";
import { afterAll, describe, expect, it } from "vitest";
import { tinyRandom } from "./fixtures.ts";

const cfgOf = (name: string) =>
  JSON.parse(readFileSync(join(tinyRandom, name, "config.json"), "utf8")) as Record<string, unknown>;
const tmp = mkdtempSync(join(tmpdir(), "moeq-models-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("architecture detection", () => {
  it("registers the eight easy architectures as easy", () => {
    const easy = [
      "ernie4_5_moe",
      "glm4_moe",
      "hunyuan_v1_moe",
      "minimax_m2",
      "mixtral",
      "olmoe",
      "qwen2_moe",
      "qwen3_moe",
    ];
    for (const t of easy) expect(architectures.get(t)?.difficulty, t).toBe("easy");
    expect(supportedModelTypes()).toEqual([...supportedModelTypes()].sort());
  });

  it("an unknown model_type names the supported ones and the guide", () => {
    let err: unknown;
    try {
      detectArchitecture({ model_type: "not_a_moe", architectures: ["NotAMoeForCausalLM"] }, "x/config.json");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnknownArchitectureError);
    const e = err as UnknownArchitectureError;
    expect(e.modelType).toBe("not_a_moe");
    expect(e.message).toContain("x/config.json");
    expect(e.message).toContain("'not_a_moe'");
    for (const t of supportedModelTypes()) expect(e.message).toContain(t);
    expect(e.message).toContain("docs/architectures.md");
  });

  it("falls back to architectures[0] when model_type is absent", () => {
    expect(detectArchitecture({ architectures: ["MixtralForCausalLM"] }).modelType).toBe("mixtral");
  });

  it("a malformed field is a ModelConfigError naming it", () => {
    const cfg = { ...cfgOf("qwen3_moe"), hidden_size: "64" };
    expect(() => buildSpec(cfg, "q/config.json")).toThrow(ModelConfigError);
    expect(() => buildSpec(cfg, "q/config.json")).toThrow(/q\/config.json: field 'hidden_size'/);
    const kv = { ...cfgOf("mixtral"), num_key_value_heads: 3 };
    expect(() => buildSpec(kv)).toThrow(/num_key_value_heads/);
    const rope = { ...cfgOf("mixtral"), rope_parameters: { rope_type: "not_a_rope", rope_theta: 1 } };
    expect(() => buildSpec(rope)).toThrow(/rope_type 'not_a_rope'/);
  });
});

describe("config parsing", () => {
  it("Qwen2-MoE honours mlp_only_layers and decoder_sparse_step", () => {
    const base = cfgOf("qwen2_moe");
    const { spec } = buildSpec({ ...base, num_hidden_layers: 4, mlp_only_layers: [0], decoder_sparse_step: 2 });
    expect(spec.layers.map((l) => l.mlp.kind)).toEqual(["dense", "moe", "dense", "moe"]);
    const dense = spec.layers[0].mlp;
    expect(dense.kind === "dense" && dense.gate.outFeatures).toBe(base.intermediate_size);
  });

  it("ERNIE's MoE layer window and GLM's first dense layers", () => {
    const e = buildSpec(cfgOf("ernie4_5_moe")).spec;
    expect(e.layers.map((l) => l.mlp.kind)).toEqual(["dense", "moe", "moe"]);
    const g = buildSpec(cfgOf("glm4_moe")).spec;
    expect(g.layers.map((l) => l.mlp.kind)).toEqual(["dense", "moe", "moe"]);
    const r = g.layers[1].mlp;
    expect(r.kind === "moe" && r.routing).toMatchObject({ kind: "sigmoid_bias", scale: 1.5, normTopK: true });
    expect(g.layers[0].attention.rope?.rotaryDim).toBe(8);
  });

  it("Hunyuan's per-layer moe_topk", () => {
    const { spec } = buildSpec({ ...cfgOf("hunyuan_v1_moe"), moe_topk: [1, 2, 3] });
    expect(spec.layers.map((l) => (l.mlp.kind === "moe" ? l.mlp.routing.topK : 0))).toEqual([1, 2, 3]);
    expect(spec.layers[0].attention.qkNorm?.afterRope).toBe(true);
  });
});

describe("checkpoint validation", () => {
  it("a config that implies other shapes names the first mismatched tensor", () => {
    const dir = join(tmp, "cfg-mismatch");
    cpSync(join(tinyRandom, "mixtral"), dir, { recursive: true });
    // a config asking for 9 experts needs experts.8, which the checkpoint lacks
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfgOf("mixtral"), num_local_experts: 9 }));
    expect(() => loadModel(dir)).toThrow(ModelWeightError);
    expect(() => loadModel(dir)).toThrow(
      /model\.layers\.0\.block_sparse_moe\.gate\.weight' has shape \[8,64\], the config implies \[9,64\]/,
    );
  });

  it("a shape mismatch is named", () => {
    const dir = join(tmp, "cfg-inter");
    cpSync(join(tinyRandom, "qwen3_moe"), dir, { recursive: true });
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfgOf("qwen3_moe"), moe_intermediate_size: 40 }));
    expect(() => loadModel(dir)).toThrow(
      /experts\.0\.gate_proj\.weight' has shape \[32,64\], the config implies \[40,64\]/,
    );
  });

  it("an absent tensor is reported as missing", () => {
    const dir = join(tmp, "cfg-qkv");
    cpSync(join(tinyRandom, "mixtral"), dir, { recursive: true });
    // Qwen2-MoE names on a Mixtral checkpoint
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfgOf("qwen2_moe"), model_type: "qwen2_moe" }));
    expect(() => loadModel(dir)).toThrow(
      /tensor 'model\.layers\.0\.self_attn\.q_proj\.bias' \(bias, shape \[64\]\) is missing/,
    );
  });

  it("a missing config.json is a ModelConfigError naming the file", () => {
    expect(() => loadModel(join(tmp, "nowhere"))).toThrow(/nowhere\/config\.json: cannot read/);
  });

  it("an unregistered model_type is read by architectures[0] only, and said (architectureNote)", () => {
    const ds = cfgOf("deepseek_v3");
    const kimi = { ...ds, model_type: "kimi_k2" };
    expect(detectArchitecture(kimi).modelType).toBe("deepseek_v3");
    expect(architectureNote(kimi)).toBe(
      "model_type 'kimi_k2' is not registered; read as deepseek_v3 because architectures[0] is DeepseekV3ForCausalLM",
    );
    expect(architectureNote(ds)).toBeUndefined();
    // a registered class later in the list does not count
    expect(() => detectArchitecture({ ...kimi, architectures: ["KimiForCausalLM", "DeepseekV3ForCausalLM"] })).toThrow(
      /model_type 'kimi_k2' is not a supported architecture/,
    );
  });

  it("tensors the configured model never reads are listed (summarize().unusedTensors)", () => {
    const dir = join(tmp, "fewer-layers");
    cpSync(join(tinyRandom, "qwen3_moe"), dir, { recursive: true });
    const cfg = cfgOf("qwen3_moe");
    const last = (cfg.num_hidden_layers as number) - 1;
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, num_hidden_layers: last }));
    const m = loadModel(dir);
    try {
      const unused = summarize(m).unusedTensors;
      expect(unused.length).toBeGreaterThan(0);
      expect(unused.every((n) => n.startsWith(`model.layers.${last}.`))).toBe(true);
    } finally {
      m.close();
    }
    const full = loadModel(join(tinyRandom, "qwen3_moe"));
    expect(summarize(full).unusedTensors).toEqual([]);
    full.close();
  });
});

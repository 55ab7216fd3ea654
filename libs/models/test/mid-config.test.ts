// Bad configs of the mid architectures fail with a ModelConfigError naming the field, and
// config-only variants (other layer patterns) resolve the way transformers' defaults do.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { buildSpec, ModelConfigError, type RawConfig } from "@moeq/models";
import { describe, expect, it } from "vitest";
import { tinyRandom } from "./fixtures.ts";

const cfg = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(tinyRandom, name, "config.json"), "utf8"));

function configError(config: RawConfig): ModelConfigError {
  try {
    buildSpec(config, "config.json");
  } catch (e) {
    expect(e).toBeInstanceOf(ModelConfigError);
    return e as ModelConfigError;
  }
  throw new Error("expected a ModelConfigError");
}

describe("mid architectures: config errors name the field", () => {
  it("DBRX without attn_config, with an unknown activation or a bad normalisation power", () => {
    const { attn_config: _, ...noAttn } = cfg("dbrx");
    expect(configError(noAttn).field).toBe("attn_config");
    const c = cfg("dbrx");
    const ffn = c.ffn_config as Record<string, unknown>;
    expect(configError({ ...c, ffn_config: { ...ffn, ffn_act_fn: { name: "tanh" } } }).message).toMatch(
      /ffn_act_fn 'tanh'/,
    );
    expect(configError({ ...c, ffn_config: { ...ffn, moe_normalize_expert_weights: -1 } }).field).toBe(
      "ffn_config.moe_normalize_expert_weights",
    );
  });

  it("GPT-OSS layer_types of the wrong length; Llama 4 no_rope_layers of the wrong length", () => {
    expect(configError({ ...cfg("gpt_oss"), layer_types: ["full_attention"] }).field).toBe("layer_types");
    expect(configError({ ...cfg("llama4_text"), no_rope_layers: [1, 0] }).field).toBe("no_rope_layers");
  });
});

describe("mid architectures: defaults for fields the fixtures set", () => {
  it("GPT-OSS without layer_types: even layers slide, odd layers attend fully", () => {
    const { layer_types: _, ...c } = cfg("gpt_oss");
    const { spec } = buildSpec(c);
    expect(spec.layers.map((L) => (L.attention.kind === "standard" ? (L.attention.window ?? 0) : -1))).toEqual([
      8, 0, 8,
    ]);
  });

  it("Llama 4 without moe_layers / no_rope_layers / layer_types: MoE every step-th layer, NoPE every 4th", () => {
    const { moe_layers: _m, no_rope_layers: _n, layer_types: _l, ...c } = cfg("llama4_text");
    const { spec } = buildSpec({ ...c, interleave_moe_layer_step: 2 });
    expect(spec.layers.map((L) => L.mlp.kind)).toEqual(["dense", "moe", "dense", "moe"]);
    const att = spec.layers.map((L) => (L.attention.kind === "standard" ? L.attention : undefined));
    expect(att.map((a) => a?.rope === null)).toEqual([false, false, false, true]);
    expect(att.map((a) => a?.chunk ?? 0)).toEqual([8, 8, 8, 0]);
    expect(att.map((a) => a?.qTemperature !== undefined)).toEqual([false, false, false, true]);
    expect(att.map((a) => a?.qkNorm?.afterRope)).toEqual([true, true, true, undefined]);
  });

  it("Phi-MoE with attention_bias and lm_head_bias names the bias tensors", () => {
    const { spec } = buildSpec({ ...cfg("phimoe"), attention_bias: true, lm_head_bias: true });
    const a = spec.layers[0].attention;
    expect(a.kind === "standard" && [a.q.bias, a.o.bias]).toEqual([
      "model.layers.0.self_attn.q_proj.bias",
      "model.layers.0.self_attn.o_proj.bias",
    ]);
    expect(spec.lmHead.bias).toBe("lm_head.bias");
    expect(spec.finalNorm).toMatchObject({ kind: "layer", bias: "model.norm.bias" });
  });
});

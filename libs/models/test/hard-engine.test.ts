// The hard architectures under the layer-at-a-time API the calibrator and evaluator drive, and
// the config logic the fixtures do not reach (YaRN softmax scale of MLA).
import { join } from "node:path";
import { buildSpec, loadModel, type MlaSpec, overlaySource, readConfig, tensorToF32 } from "@moeq/models";
import { fromF32 } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import { maxRelErr, tinyRandom } from "./fixtures.ts";

describe("hard architectures under the layer-at-a-time API", { timeout: 60_000 }, () => {
  for (const fixture of ["deepseek_v32", "mimo_v2_flash", "qwen3_5_moe_text"])
    it(`${fixture}: attention → router → moe per layer reproduces forward; an overlaid weight is used`, async () => {
      const m = loadModel(join(tinyRandom, fixture));
      try {
        const e = m.engine();
        const [B, T] = [2, 13];
        const ids = Array.from({ length: B * T }, (_, i) => (i * 53 + 7) % m.spec.vocabSize);
        const want = (await e.forward(ids, B, T)).logits;
        const seq = e.sequences(B, T);
        let h = e.embed(ids, seq);
        for (let L = 0; L < e.numLayers; L++) {
          const { residual, x } = await e.attention(L, h, seq);
          if (e.isMoe(L)) {
            const r = await e.router(L, x);
            h = e.finishLayer(residual, await e.moe(L, x, r));
          } else h = e.finishLayer(residual, (await e.mlp(L, x)).out);
        }
        const got = await e.logits(e.finalNorm(h));
        expect(maxRelErr(got, want)).toBe(0);
        // the evaluator overlays dequantized weights: the token mixer must read them
        const mixer = m.spec.layers[0].attention;
        const name =
          mixer.kind === "mla" ? mixer.kvB.weight : mixer.kind === "gated_deltanet" ? mixer.out.weight : mixer.o.weight;
        const w = tensorToF32(m.source.tensor(name), name).map((v) => v * 0.5);
        e.setSource(overlaySource(m.source, new Map([[name, fromF32(w, "F32", m.source.tensor(name).shape)]])), [name]);
        const changed = (await e.forward(ids, B, T)).logits;
        expect(maxRelErr(changed, want)).toBeGreaterThan(1e-3);
      } finally {
        m.close();
      }
    });
});

describe("MLA softmax scale under YaRN", { timeout: 60_000 }, () => {
  const yarn = {
    rope_type: "yarn",
    rope_theta: 10000,
    factor: 40,
    original_max_position_embeddings: 4096,
    mscale: 1,
    mscale_all_dim: 1,
    beta_fast: 32,
    beta_slow: 1,
  };
  const mscale = 0.1 * Math.log(40) + 1;
  it("DeepSeek-V3 multiplies qk_head_dim^-½ by mscale(factor, mscale_all_dim)²", () => {
    const { spec } = buildSpec({ ...readConfig(join(tinyRandom, "deepseek_v3")), rope_parameters: yarn });
    const a = spec.layers[0].attention as MlaSpec;
    expect(a.scale).toBeCloseTo(24 ** -0.5 * mscale * mscale, 12);
    expect(a.rope.scaling.type).toBe("yarn");
    expect(a.rope.interleaved).toBe(true);
  });
  it("DeepSeek-V2 keeps qk_head_dim^-½ (transformers applies no mscale² there)", () => {
    const { spec } = buildSpec({ ...readConfig(join(tinyRandom, "deepseek_v2")), rope_parameters: yarn });
    expect((spec.layers[0].attention as MlaSpec).scale).toBeCloseTo(24 ** -0.5, 12);
  });
  it("q_lora_rank null gives a plain q_proj", () => {
    const { spec } = buildSpec({ ...readConfig(join(tinyRandom, "deepseek_v2")), q_lora_rank: null });
    const a = spec.layers[0].attention as MlaSpec;
    expect(a.q?.weight).toBe("model.layers.0.self_attn.q_proj.weight");
    expect([a.q?.outFeatures, a.q?.inFeatures]).toEqual([4 * 24, 64]);
    expect(a.qA).toBeUndefined();
  });
});

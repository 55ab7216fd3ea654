// DeepSeek-V3.2 (DSA): DeepSeek-V3 plus a lightning indexer in every attention layer that picks
// each query's top index_topk keys; MLA then attends to those keys only (see blocks/dsa-indexer.ts).
// Indexer: wq_b from the normed q latent, one key head wk → LayerNorm (eps 1e-6, with bias),
// half-split RoPE on the first qk_rope_head_dim dims (MLA itself stays interleaved), weights_proj
// per head. RoPE is always interleaved for MLA (rope_interleave is not a V3.2 option).
import type { Architecture } from "../arch.ts";
import { ropeFromConfig } from "../blocks/rope.ts";
import { lin } from "../blocks/standard.ts";
import { deepseekModel, noauxRouting } from "./deepseek_v3.ts";

export const deepseek_v32: Architecture = {
  modelType: "deepseek_v32",
  hfArchitectures: ["DeepseekV32ForCausalLM"],
  difficulty: "hard",
  build(cfg) {
    const hidden = cfg.int("hidden_size", undefined, 1);
    const Hi = cfg.int("index_n_heads", 64, 1);
    const Di = cfg.int("index_head_dim", 128, 1);
    const qLora = cfg.int("q_lora_rank", 1536, 1);
    const R = cfg.int("qk_rope_head_dim", 64, 2);
    const topK = cfg.int("index_topk", 2048, 1);
    const rope = ropeFromConfig(cfg, R, false);
    return deepseekModel(
      "deepseek_v32",
      cfg,
      {
        interleaved: true,
        yarnMscaleSquared: true,
        indexer: (a) => ({
          wqB: lin(`${a}.indexer.wq_b`, Hi * Di, qLora),
          wk: lin(`${a}.indexer.wk`, Di, hidden),
          kNorm: {
            kind: "layer",
            weight: `${a}.indexer.k_norm.weight`,
            bias: `${a}.indexer.k_norm.bias`,
            dim: Di,
            eps: 1e-6,
          },
          weightsProj: lin(`${a}.indexer.weights_proj`, Hi, hidden),
          numHeads: Hi,
          headDim: Di,
          topK,
          rope,
        }),
      },
      (p) => noauxRouting(cfg, p),
    );
  },
};

// The resolved description of a model that an architecture file builds from config.json: every
// block, every weight name with its shape, and the routing rule. The engine, the checkpoint
// validator, `moeq inspect` and the quantizer read this; nothing downstream parses configs.
import type { ActivationKind } from "@moeq/native";
import type { DType } from "@moeq/tensor";
import type { RopeSpec } from "./blocks/rope.ts";

/** y = x·Wᵀ (+ b); W stored [outFeatures, inFeatures] (PyTorch Linear layout). */
export interface LinearSpec {
  readonly weight: string;
  readonly bias?: string;
  readonly outFeatures: number;
  readonly inFeatures: number;
  /**
   * The weight is rows [start, start + outFeatures) of a [totalRows, inFeatures] tensor shared with
   * other projections (DBRX's fused Wqkv); a bias likewise.
   */
  readonly rowSlice?: { readonly start: number; readonly totalRows: number };
}

export type NormSpec =
  | {
      readonly kind: "rms";
      /** null: weightless */
      readonly weight: string | null;
      readonly dim: number;
      readonly eps: number;
      /** (1 + w) zero-centred weights (Qwen3-Next, Gemma) */
      readonly plusOne?: boolean;
    }
  | {
      readonly kind: "layer";
      readonly weight: string | null;
      readonly bias: string | null;
      readonly dim: number;
      readonly eps: number;
    };

export interface QkNormSpec {
  readonly q: NormSpec;
  readonly k: NormSpec;
  /** "head": over each head's headDim (Qwen3, GLM, Hunyuan); "full": over the whole projection (OLMoE, MiniMax-M2). */
  readonly scope: "head" | "full";
  /** Hunyuan normalises after RoPE; everyone else before. */
  readonly afterRope: boolean;
}

export interface AttentionSpec {
  readonly kind: "standard";
  readonly q: LinearSpec;
  readonly k: LinearSpec;
  readonly v: LinearSpec;
  readonly o: LinearSpec;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vHeadDim: number;
  readonly scale: number;
  readonly qkNorm?: QkNormSpec;
  /** null: NoPE layer */
  readonly rope: RopeSpec | null;
  /** Sliding window (keys with i − j < window), 0/undefined = full. */
  readonly window?: number;
  /** Chunked attention block size. */
  readonly chunk?: number;
  /** Per-head sink logits tensor [numHeads]. */
  readonly sinks?: string;
  /** Clamp q, k, v to ±clipQkv after projection (OLMoE, DBRX). */
  readonly clipQkv?: number;
  /**
   * Llama 4 NoPE layers: q ×= log1p(floor((pos + 1) / floorScale))·attnScale + 1, after the q/k
   * norms, before attention.
   */
  readonly qTemperature?: { readonly floorScale: number; readonly attnScale: number };
  /** v ×= valueScale after projection (MiMo-V2-Flash attention_value_scale). */
  readonly valueScale?: number;
  /**
   * Qwen3-Next gated attention: q_proj emits [q | gate] per head (2·headDim each), and the
   * attention output is multiplied by sigmoid(gate) before o_proj.
   */
  readonly outputGate?: boolean;
}

/** DeepSeek-V3.2 sparse-attention indexer (DSA): picks each query's top-k keys for MLA. */
export interface IndexerSpec {
  /** [numHeads·headDim, qLoraRank] from the normed q latent */
  readonly wqB: LinearSpec;
  /** [headDim, hidden]: one key head */
  readonly wk: LinearSpec;
  readonly kNorm: NormSpec;
  /** [numHeads, hidden]: per-head weights of the relu scores */
  readonly weightsProj: LinearSpec;
  readonly numHeads: number;
  readonly headDim: number;
  /** keys kept per query */
  readonly topK: number;
  /** RoPE on the first rope.rotaryDim dims of q and k (half-split, not interleaved). */
  readonly rope: RopeSpec;
}

/**
 * Multi-head latent attention (DeepSeek-V2/V3, GLM-4.7-Flash): q through a LoRA (q_a → RMSNorm →
 * q_b) or a plain q_proj; [c | k_rope] = kv_a(x); [k_nope | v] per head = kv_b(RMSNorm(c)); k_rope
 * is shared by every head; RoPE on the rope slices only.
 */
export interface MlaSpec {
  readonly kind: "mla";
  /** q_lora_rank null: a plain q_proj */
  readonly q?: LinearSpec;
  readonly qA?: LinearSpec;
  readonly qANorm?: NormSpec;
  readonly qB?: LinearSpec;
  readonly kvA: LinearSpec;
  readonly kvANorm: NormSpec;
  readonly kvB: LinearSpec;
  readonly o: LinearSpec;
  readonly numHeads: number;
  readonly kvLoraRank: number;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number;
  readonly vHeadDim: number;
  readonly scale: number;
  readonly rope: RopeSpec;
  readonly indexer?: IndexerSpec;
}

/**
 * Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5): projections → causal depthwise conv +
 * SiLU over [q | k | v] → per-head L2-normed q, k → gated delta rule → RMSNorm(o)·silu(z) → out_proj.
 */
export interface DeltaNetSpec {
  readonly kind: "gated_deltanet";
  /**
   * "grouped" (Qwen3-Next): in_proj_qkvz rows per key head [q, k, v(r·dv), z(r·dv)] and in_proj_ba
   * per key head [b(r), a(r)] with r = Hv/Hk. "split" (Qwen3.5): in_proj_qkv = [q | k | v], and
   * separate in_proj_z, in_proj_b, in_proj_a.
   */
  readonly projections:
    | { readonly layout: "grouped"; readonly qkvz: LinearSpec; readonly ba: LinearSpec }
    | {
        readonly layout: "split";
        readonly qkv: LinearSpec;
        readonly z: LinearSpec;
        readonly b: LinearSpec;
        readonly a: LinearSpec;
      };
  /** depthwise conv weight [convDim, 1, kernel], no bias */
  readonly conv: string;
  readonly convKernel: number;
  readonly aLog: string;
  readonly dtBias: string;
  /** RMSNorm over each value head (plain w), then × silu(z) */
  readonly norm: NormSpec;
  readonly out: LinearSpec;
  readonly numKHeads: number;
  readonly numVHeads: number;
  readonly kHeadDim: number;
  readonly vHeadDim: number;
}

/** What mixes tokens in a layer. */
export type MixerSpec = AttentionSpec | MlaSpec | DeltaNetSpec;

export interface DenseMlpSpec {
  readonly kind: "dense";
  readonly gate: LinearSpec;
  readonly up: LinearSpec;
  readonly down: LinearSpec;
  readonly act: ActivationKind;
}

/** Where expert e's projections live on disk. */
export type ExpertLayout =
  | {
      /** `${prefix}.${e}.${gate|up|down}.weight`, each a 2-D Linear weight. */
      readonly kind: "per_expert";
      readonly prefix: string;
      readonly gate: string;
      readonly up: string;
      readonly down: string;
    }
  | {
      /**
       * Fused 3-D tensors. gateUp: [E, 2I, H] (or [E, H, 2I] when transposed); down: [E, H, I]
       * (or [E, I, H] when transposed). split: "halves" = [gate; up], "interleaved" = gate at even
       * rows, up at odd rows (GPT-OSS).
       */
      readonly kind: "fused";
      readonly gateUp: string;
      readonly down: string;
      readonly split: "halves" | "interleaved";
      readonly transposed: boolean;
      readonly gateUpBias?: string;
      /** Per-expert module names serving engines load quantized experts under (see blocks/fused-tensors.ts). */
      readonly packedAs?: PackedExpertNames;
      readonly downBias?: string;
    }
  | {
      /**
       * DBRX: three 2-D tensors [E·I, H] stacking the experts along rows. Expert e's gate and up
       * are rows [e·I, (e+1)·I) used as Linear weights [I, H]; its down slice is [I, H] too, used
       * as y = act·D (the transpose of a Linear [H, I]) when downTransposed.
       */
      readonly kind: "stacked";
      readonly gate: string;
      readonly up: string;
      readonly down: string;
      readonly downTransposed: boolean;
      readonly packedAs?: PackedExpertNames;
    };

/** `${prefix}.${e}.${gate|up|down}`: the module names a packer writes one fused expert's matrices under. */
export interface PackedExpertNames {
  readonly prefix: string;
  readonly gate: string;
  readonly up: string;
  readonly down: string;
}

export interface ExpertsSpec {
  readonly numExperts: number;
  readonly hidden: number;
  readonly intermediate: number;
  readonly act: ActivationKind;
  readonly layout: ExpertLayout;
  /** GPT-OSS clamped SwiGLU: (clamp(up, ±limit) + 1) · g·σ(alpha·g), g = min(gate, limit); replaces act. */
  readonly clampedGlu?: { readonly alpha: number; readonly limit: number };
}

export type RoutingSpec =
  | {
      /** p = softmax(z); top-k of p; renormalise if normTopK (Mixtral, Qwen2/3-MoE, OLMoE, Hunyuan). */
      readonly kind: "softmax_topk";
      readonly topK: number;
      readonly normTopK: boolean;
      /** DBRX moe_normalize_expert_weights: renormalise by this p-norm instead of the sum. */
      readonly normPower?: number;
    }
  | {
      /** top-k on the raw logits, w = softmax over the k selected logits (GPT-OSS, Granite-MoE). */
      readonly kind: "topk_softmax";
      readonly topK: number;
    }
  | {
      /** top-k on the raw logits, w = sigmoid(selected logits), no renormalisation (Llama 4). */
      readonly kind: "topk_sigmoid";
      readonly topK: number;
    }
  | {
      /**
       * Phi-MoE inference sparsemixer: per round the max remaining logit m wins; logits with
       * (m − z)/max(|z|, m) > 2·jitterEps are masked; w = softmax(masked)[winner]; the winner is
       * then set to −inf. No renormalisation.
       */
      readonly kind: "sparsemixer";
      readonly topK: number;
      readonly jitterEps: number;
    }
  | {
      /**
       * s = sigmoid(z); selection on s + bias (optionally group-limited: groups scored by the sum
       * of their top-2, keep topkGroup groups); w = s[idx] (/ Σ if normTopK) × scale.
       * DeepSeek-V3 noaux_tc, GLM-4.5, MiniMax-M2.
       */
      readonly kind: "sigmoid_bias";
      readonly topK: number;
      readonly bias: string | null;
      /** on-disk shape of the bias when not [E] (ERNIE stores [1, E]) */
      readonly biasShape?: readonly number[];
      readonly normTopK: boolean;
      readonly scale: number;
      readonly nGroup: number;
      readonly topkGroup: number;
    }
  | {
      /**
       * DeepSeek-V2: p = softmax(z); with nGroup > 1 (group_limited_greedy) groups are scored by
       * their max, all but the best topkGroup zeroed; top-k of p; w = p[idx] × scale, no renorm.
       */
      readonly kind: "softmax_group_limited";
      readonly topK: number;
      readonly nGroup: number;
      readonly topkGroup: number;
      readonly scale: number;
    }
  | {
      /** p = softmax(z); selection on p + bias; w = p[idx] / max(Σ, normMin) (ERNIE-4.5). */
      readonly kind: "softmax_bias";
      readonly topK: number;
      readonly bias: string;
      readonly biasShape?: readonly number[];
      readonly normMin: number;
    };

export interface SharedExpertSpec {
  readonly mlp: DenseMlpSpec;
  /** Qwen2-MoE: output scaled by sigmoid(x·gᵀ), g [1, H]. */
  readonly gate?: LinearSpec;
}

export interface MoeSpec {
  readonly kind: "moe";
  readonly router: LinearSpec;
  readonly routing: RoutingSpec;
  readonly experts: ExpertsSpec;
  readonly shared?: SharedExpertSpec;
  /** What transformers returns as router_logits for this block: the raw logits or the scores. */
  readonly reportedRouterLogits: "logits" | "scores";
  /** Llama 4: the routing weight scales the expert's input instead of its output. */
  readonly weightScalesInput?: boolean;
}

export interface LayerSpec {
  readonly index: number;
  readonly inputNorm: NormSpec;
  readonly attention: MixerSpec;
  readonly postAttentionNorm: NormSpec;
  readonly mlp: DenseMlpSpec | MoeSpec;
}

export interface ModelSpec {
  readonly modelType: string;
  readonly hiddenSize: number;
  readonly vocabSize: number;
  readonly embed: { readonly weight: string; readonly multiplier?: number };
  readonly layers: readonly LayerSpec[];
  readonly finalNorm: NormSpec;
  readonly lmHead: LinearSpec;
  /** lm_head reads the embedding matrix (tie_word_embeddings). */
  readonly tiedEmbeddings: boolean;
  /** Largest position the RoPE tables must cover (grown on demand). */
  readonly maxPositions: number;
  /** Granite: attention and MLP outputs are scaled by this before each residual add. */
  readonly residualMultiplier?: number;
  /** Granite: logits are divided by this. */
  readonly logitsScaling?: number;
}

/** What a quantizable weight is, for the quantizer and the calibrator. */
export interface WeightRole {
  readonly tensor: string;
  readonly layer: number;
  /** null outside the routed experts (attention, dense MLP, shared expert). */
  readonly expert: number | null;
  /** "attention" also covers MLA and DeltaNet projections; "indexer" is DeepSeek-V3.2's DSA indexer. */
  readonly module: "attention" | "mlp" | "experts" | "shared_expert" | "indexer";
  readonly projection:
    | "q_proj"
    | "k_proj"
    | "v_proj"
    | "o_proj"
    | "gate_proj"
    | "up_proj"
    | "down_proj"
    // MLA
    | "q_a_proj"
    | "q_b_proj"
    | "kv_a_proj_with_mqa"
    | "kv_b_proj"
    // DSA indexer
    | "wq_b"
    | "wk"
    | "weights_proj"
    // Gated DeltaNet
    | "in_proj_qkvz"
    | "in_proj_ba"
    | "in_proj_qkv"
    | "in_proj_z"
    | "in_proj_b"
    | "in_proj_a"
    | "out_proj";
  /** [out, in] of this projection (for one expert when fused). */
  readonly shape: readonly [number, number];
  /** When several projections/experts share one tensor on disk: where this one sits. */
  /** A non-expert projection that is a row range of a larger tensor (DBRX Wqkv): rows [start, start + out) of [totalRows, in]. */
  readonly rowSlice?: { readonly start: number; readonly totalRows: number };
  readonly fused?: {
    readonly expertAxis: 0;
    /** along the output rows of expert e's slice */
    readonly rows: "first_half" | "second_half" | "even" | "odd" | "all";
    readonly transposed: boolean;
    /** The tensor is 2-D [E·n, m] (DBRX), read as [E, n, m]; absent: 3-D [E, ·, ·]. */
    readonly stacked?: boolean;
  };
}

export interface ExpectedTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly role:
    | "embedding"
    | "lm_head"
    | "norm"
    | "attention"
    | "bias"
    | "router"
    | "router_bias"
    | "shared_expert_gate"
    | "mlp"
    | "experts"
    | "shared_expert"
    | "sinks"
    | "linear_attention";
}

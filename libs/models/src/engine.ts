// The forward engine: embeddings → layers → final norm → lm_head, in f32 on the CPU kernels, over
// weights read through a WeightSource (bf16 on disk, widened per use with a bounded f32 cache).
import { native } from "@moeq/native";
import { attentionBlock, type SequenceBatch } from "./blocks/attention.ts";
import { deltaNetBlock } from "./blocks/deltanet.ts";
import { type ExpertOutput, expertForward } from "./blocks/experts.ts";
import { linear } from "./blocks/linear.ts";
import type { LinearHook, LinearSite } from "./blocks/linear-hook.ts";
import { mlaBlock } from "./blocks/mla.ts";
import { denseMlp } from "./blocks/mlp.ts";
import { moeForward, routerForward } from "./blocks/moe.ts";
import { applyNorm } from "./blocks/norm.ts";
import { type RopeSpec, type RopeTables, ropeTables } from "./blocks/rope.ts";
import type { Routing } from "./blocks/routing.ts";
import { ModelInputError, ModelWeightError } from "./errors.ts";
import type { DenseMlpSpec, LayerSpec, LinearSpec, ModelSpec, MoeSpec, WeightRole } from "./spec.ts";
import { mixerLinears } from "./tensors.ts";
import { F32Weights, type WeightSource } from "./weights.ts";

export type { Routing, SequenceBatch };

/** Where every hookable LinearSpec and ExpertsSpec of a model sits. */
export function linearSites(spec: ModelSpec): Map<object, LinearSite> {
  const sites = new Map<object, LinearSite>();
  const add = (l: LinearSpec, layer: number, module: WeightRole["module"], projection: WeightRole["projection"]) => {
    if (!sites.has(l)) sites.set(l, { layer, module, projection });
  };
  const mlp = (m: DenseMlpSpec, layer: number, module: "mlp" | "shared_expert") => {
    add(m.gate, layer, module, "gate_proj");
    add(m.up, layer, module, "up_proj");
    add(m.down, layer, module, "down_proj");
  };
  for (const L of spec.layers) {
    for (const { l, p, module } of mixerLinears(L.attention)) add(l, L.index, module, p);
    const m = L.mlp;
    if (m.kind === "dense") mlp(m, L.index, "mlp");
    else {
      sites.set(m.experts, { layer: L.index, module: "experts", projection: "gate_proj" });
      if (m.shared) mlp(m.shared.mlp, L.index, "shared_expert");
    }
  }
  return sites;
}

export interface AttentionResult {
  /** [rows, H] hidden state after the attention residual (input of the MLP residual) */
  readonly residual: Float32Array;
  /** [rows, H] post-attention-normed input of the MoE / MLP block */
  readonly x: Float32Array;
}

export interface ForwardOptions {
  readonly hiddenStates?: boolean;
  readonly routerLogits?: boolean;
}

export interface ForwardResult {
  /** [B·T, V] */
  readonly logits: Float32Array;
  /** transformers' output_hidden_states: [0] embeddings, [i] output of layer i, the last with the final norm applied */
  readonly hiddenStates?: Float32Array[];
  /** per MoE layer, what transformers returns as router_logits ([B·T, E]) */
  readonly routerLogits?: Float32Array[];
}

export interface EngineOptions {
  /** f32 copies of weights kept between calls (default 1 GiB). */
  readonly cacheBytes?: number;
}

/**
 * Layer-at-a-time forward engine. A batch is B sequences of equal length T, rows ordered b·T + t.
 *
 * The calibrator and evaluator drive it one layer at a time:
 * ```ts
 * const seq = engine.sequences(B, T);
 * let h = engine.embed(ids, seq);                          // [B·T, H]
 * for (let L = 0; L < engine.numLayers; L++) {
 *   const { residual, x } = await engine.attention(L, h, seq); // attention part + residual, normed MLP input
 *   if (engine.isMoe(L)) {
 *     const r = await engine.router(L, x);                 // logits, scores, top-k indices, combine weights
 *     const { out, act } = await engine.expert(L, e, rowsOfX); // one expert on given rows (+ down_proj input)
 *     const y = await engine.moe(L, x, r);                 // the MoE block under a (possibly edited) routing
 *     h = engine.finishLayer(residual, y);                 // residual add
 *   } else h = engine.finishLayer(residual, (await engine.mlp(L, x)).out);
 * }
 * const logits = await engine.logits(engine.finalNorm(h));  // [B·T, V]
 * ```
 * Weights come from `engine.weights.source`; replace it (setSource) to overlay dequantized or
 * swapped tensors.
 */
export class Engine {
  readonly weights: F32Weights;
  private readonly ropeCache = new Map<string, RopeTables>();
  private sites: Map<object, LinearSite> | undefined;

  constructor(
    readonly spec: ModelSpec,
    source: WeightSource,
    opts: EngineOptions = {},
  ) {
    this.weights = new F32Weights(source, opts.cacheBytes ?? 2 ** 30);
  }

  get numLayers(): number {
    return this.spec.layers.length;
  }

  get hiddenSize(): number {
    return this.spec.hiddenSize;
  }

  /** Swap the weight source (e.g. an overlay with dequantized weights); drops cached f32 copies. */
  setSource(source: WeightSource, changed?: Iterable<string>): void {
    this.weights.source = source;
    this.weights.invalidate(changed);
  }

  /**
   * Every later Linear application on a quantizable weight (attention/MLA/DeltaNet/indexer
   * projections, dense MLP, shared expert, routed experts) passes its input through `hook` before
   * its GEMM; routers, the shared-expert gate and lm_head do not. `undefined` removes it.
   */
  setLinearHook(hook: LinearHook | undefined): void {
    if (!hook) {
      this.weights.linearHook = undefined;
      return;
    }
    this.sites ??= linearSites(this.spec);
    this.weights.linearHook = { fn: hook, sites: this.sites };
  }

  layer(L: number): LayerSpec {
    const s = this.spec.layers[L];
    if (!s)
      throw new ModelInputError({ message: `layer ${L} is out of range (the model has ${this.numLayers} layers)` });
    return s;
  }

  isMoe(L: number): boolean {
    return this.layer(L).mlp.kind === "moe";
  }

  private moeSpec(L: number): MoeSpec {
    const m = this.layer(L).mlp;
    if (m.kind !== "moe") throw new ModelInputError({ message: `layer ${L} is a dense layer, not MoE` });
    return m;
  }

  sequences(batch: number, seqLen: number): SequenceBatch {
    if (!Number.isInteger(batch) || !Number.isInteger(seqLen) || batch < 1 || seqLen < 1)
      throw new ModelInputError({
        message: `batch (${batch}) and sequence length (${seqLen}) must be positive integers`,
      });
    const positions = new Int32Array(batch * seqLen);
    for (let b = 0; b < batch; b++) for (let t = 0; t < seqLen; t++) positions[b * seqLen + t] = t;
    return { batch, seqLen, positions };
  }

  /** Token ids [B·T] → embeddings [B·T, H], reading only the needed rows of the embedding matrix. */
  embed(ids: ArrayLike<number | bigint>, seq: SequenceBatch): Float32Array {
    const H = this.spec.hiddenSize;
    const V = this.spec.vocabSize;
    const rows = seq.batch * seq.seqLen;
    if (ids.length !== rows)
      throw new ModelInputError({ message: `expected ${rows} token ids (B·T), got ${ids.length}` });
    const name = this.spec.embed.weight;
    const t = this.weights.source.tensor(name);
    if (t.shape.length !== 2 || t.shape[0] !== V || t.shape[1] !== H)
      throw new ModelWeightError({
        tensor: name,
        message: `embedding '${name}' has shape [${t.shape}], expected [${V}, ${H}]`,
      });
    const out = new Float32Array(rows * H);
    const bytesPerRow = t.data.byteLength / V;
    const row = new Float32Array(H);
    for (let r = 0; r < rows; r++) {
      const id = Number(ids[r]);
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new ModelInputError({
          message: `token id ${String(ids[r])} at position ${r} is outside the vocabulary [0, ${V})`,
        });
      const bytes = t.data.subarray(id * bytesPerRow, (id + 1) * bytesPerRow);
      if (t.dtype === "BF16" && bytes.byteOffset % 2 === 0) native.bf16ToF32(bytes, row);
      else {
        const f = this.weights.get(name, V * H);
        row.set(f.subarray(id * H, (id + 1) * H));
      }
      out.set(row, r * H);
    }
    const m = this.spec.embed.multiplier;
    if (m !== undefined && m !== 1) for (let i = 0; i < out.length; i++) out[i] *= m;
    return out;
  }

  private rope(spec: RopeSpec, seqLen: number): RopeTables {
    const key = `${JSON.stringify(spec)}:${seqLen}`;
    let t = this.ropeCache.get(key);
    if (!t) {
      t = ropeTables(spec, seqLen, seqLen);
      this.ropeCache.set(key, t);
    }
    return t;
  }

  /** input norm → attention → residual add → post-attention norm. `hidden` is not modified. */
  async attention(L: number, hidden: Float32Array, seq: SequenceBatch): Promise<AttentionResult> {
    const spec = this.layer(L);
    const rows = seq.batch * seq.seqLen;
    const H = this.spec.hiddenSize;
    if (hidden.length !== rows * H)
      throw new ModelInputError({ message: `layer ${L}: hidden has ${hidden.length} values, expected ${rows}×${H}` });
    const normed = applyNorm(this.weights, spec.inputNorm, hidden, rows);
    const a = spec.attention;
    const attn =
      a.kind === "mla"
        ? await mlaBlock(this.weights, a, normed, seq, (r) => this.rope(r, seq.seqLen))
        : a.kind === "gated_deltanet"
          ? await deltaNetBlock(this.weights, a, normed, seq)
          : await attentionBlock(this.weights, a, normed, seq, a.rope ? this.rope(a.rope, seq.seqLen) : null);
    const residual = new Float32Array(rows * H);
    const rm = this.spec.residualMultiplier ?? 1;
    for (let i = 0; i < residual.length; i++)
      residual[i] = hidden[i] + (rm === 1 ? attn[i] : Math.fround(attn[i] * rm));
    return { residual, x: applyNorm(this.weights, spec.postAttentionNorm, residual, rows) };
  }

  /** Router logits, scores, top-k experts and combine weights for MoE layer L on rows of x. */
  async router(L: number, x: Float32Array): Promise<Routing> {
    const m = this.moeSpec(L);
    return routerForward(this.weights, m, x, x.length / this.spec.hiddenSize);
  }

  /** Expert e of layer L on the given rows [n, H]; also returns the down_proj input [n, I]. */
  async expert(L: number, e: number, x: Float32Array): Promise<ExpertOutput> {
    const m = this.moeSpec(L);
    if (!Number.isInteger(e) || e < 0 || e >= m.experts.numExperts)
      throw new ModelInputError({
        message: `layer ${L}: expert ${e} is out of range (${m.experts.numExperts} experts)`,
      });
    return expertForward(this.weights, m.experts, e, x, x.length / this.spec.hiddenSize);
  }

  /** The MoE block's output (routed experts under `routing` + shared expert), [rows, H]. */
  async moe(L: number, x: Float32Array, routing?: Routing): Promise<Float32Array> {
    const m = this.moeSpec(L);
    const rows = x.length / this.spec.hiddenSize;
    return moeForward(this.weights, m, x, rows, routing ?? (await routerForward(this.weights, m, x, rows)));
  }

  /** The shared expert of MoE layer L alone (ungated), with its down_proj input; null when it has none. */
  async sharedExpert(L: number, x: Float32Array): Promise<{ out: Float32Array; act: Float32Array } | null> {
    const m = this.moeSpec(L);
    return m.shared ? denseMlp(this.weights, m.shared.mlp, x, x.length / this.spec.hiddenSize) : null;
  }

  /** The dense MLP of a non-MoE layer; also returns its down_proj input. */
  async mlp(L: number, x: Float32Array): Promise<{ out: Float32Array; act: Float32Array }> {
    const m = this.layer(L).mlp;
    if (m.kind !== "dense") throw new ModelInputError({ message: `layer ${L} is an MoE layer; use moe()` });
    return denseMlp(this.weights, m, x, x.length / this.spec.hiddenSize);
  }

  /** residual + block output (in place into a new array). */
  finishLayer(residual: Float32Array, blockOut: Float32Array): Float32Array {
    const h = new Float32Array(residual.length);
    const rm = this.spec.residualMultiplier ?? 1;
    for (let i = 0; i < h.length; i++) h[i] = residual[i] + (rm === 1 ? blockOut[i] : Math.fround(blockOut[i] * rm));
    return h;
  }

  /** A whole layer; `routerOut` receives what transformers reports as router_logits. */
  async runLayer(
    L: number,
    hidden: Float32Array,
    seq: SequenceBatch,
    routerOut?: Float32Array[],
  ): Promise<Float32Array> {
    const { residual, x } = await this.attention(L, hidden, seq);
    const m = this.layer(L).mlp;
    if (m.kind === "dense") return this.finishLayer(residual, (await this.mlp(L, x)).out);
    const routing = await this.router(L, x);
    routerOut?.push(m.reportedRouterLogits === "scores" ? routing.scores : routing.logits);
    return this.finishLayer(residual, await this.moe(L, x, routing));
  }

  finalNorm(hidden: Float32Array): Float32Array {
    return applyNorm(this.weights, this.spec.finalNorm, hidden, hidden.length / this.spec.hiddenSize);
  }

  /** lm_head over final-normed rows → [rows, V]. */
  async logits(normed: Float32Array): Promise<Float32Array> {
    const y = await linear(this.weights, this.spec.lmHead, normed, normed.length / this.spec.hiddenSize);
    const s = this.spec.logitsScaling ?? 1;
    if (s !== 1) for (let i = 0; i < y.length; i++) y[i] = Math.fround(y[i] / s);
    return y;
  }

  /** Full forward over B equal-length sequences (ids row-major [B, T]). */
  async forward(
    ids: ArrayLike<number | bigint>,
    batch: number,
    seqLen: number,
    opts: ForwardOptions = {},
  ): Promise<ForwardResult> {
    const seq = this.sequences(batch, seqLen);
    let h = this.embed(ids, seq);
    const hidden: Float32Array[] | undefined = opts.hiddenStates ? [h] : undefined;
    const router: Float32Array[] | undefined = opts.routerLogits ? [] : undefined;
    for (let L = 0; L < this.numLayers; L++) {
      h = await this.runLayer(L, h, seq, router);
      hidden?.push(h);
    }
    const normed = this.finalNorm(h);
    if (hidden) hidden[hidden.length - 1] = normed;
    const logits = await this.logits(normed);
    return { logits, ...(hidden ? { hiddenStates: hidden } : {}), ...(router ? { routerLogits: router } : {}) };
  }
}

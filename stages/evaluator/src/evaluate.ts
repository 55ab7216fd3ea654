// Evaluation of a packed checkpoint against its reference: the quantized model is read back
// through the format's own decoder (@moeq/formats), both models run layer-major on held-out
// windows (all windows through layer L, then L+1: one layer of each model's weights in memory),
// and we accumulate llama.cpp-style KLD statistics of the next-token distributions,
// the relative error of each MoE block's output (quantized vs reference on the reference's
// input), each expert's output error on the first batch's tokens routed to it, and each expert's
// relative weight error.

import {
  KldAccumulator,
  type KldStats,
  type LayerStats,
  RelativeErrorAccumulator,
  scoreTokens,
  type TokenScores,
} from "@moeq/eval";
import { readQuantizedCheckpoint } from "@moeq/formats";
import {
  buildSpec,
  Engine,
  extractRoleMatrix,
  loadModel,
  packTarget,
  type RawConfig,
  type Routing,
  refuseModules,
  tensorToF32,
  type WeightRole,
  type WeightSource,
  weightRoles,
} from "@moeq/models";
import { tokenWindows, type Windows } from "@moeq/runtime";
import { f32Tensor, type Tensor } from "@moeq/tensor";
import {
  type ActivationMode,
  type ActivationTreatment,
  type ExpertInputScales,
  planActivations,
} from "./activations.ts";
import { type BatchScores, type WindowBatch, windowBatches } from "./window-batches.ts";

export interface EvaluateOptions {
  readonly referenceDir: string;
  readonly quantizedDir: string;
  /** eval text spec (default brown:64x256, the held-out split) */
  readonly texts: string;
  readonly seed: number;
  readonly batchWindows: number;
  readonly cacheDir?: string;
  readonly onProgress?: (done: number, total: number) => void;
  /** windows to score instead of tokenizing `texts` (an evaluator worker gets them in its work item) */
  readonly windows?: Windows;
  /** per-layer MoE error on the first batch (default true; a worker scoring a later batch skips it) */
  readonly layerErrors?: boolean;
  /** every batch scored here, with its per-token values (a worker sends them home) */
  readonly onBatchScored?: (b0: number, scores: TokenScores) => void;
  /** batches scored by evaluator workers instead (one promise per batch), merged here in batch order */
  readonly scoreElsewhere?: (batches: readonly WindowBatch[], o: EvaluateOptions) => Promise<BatchScores>[];
  /** "quantized" (default): linear inputs quantized as the checkpoint states (W8A8, W4A4); "weights-only": f32 */
  readonly activations?: ActivationMode;
  /** experts' input scales per expert (default) or one per layer (vLLM's fused FP8 MoE) */
  readonly expertInputScales?: ExpertInputScales;
}

export interface ExpertWeightError {
  readonly layer: number;
  readonly expert: number;
  readonly relError: number;
}

/** An expert's output error on the evaluation tokens the reference router sent to it. */
export interface ExpertOutputError {
  readonly layer: number;
  readonly expert: number;
  /** ‖expert_q(x) − expert(x)‖ / ‖expert(x)‖ over its routed rows of the first batch */
  readonly relError: number;
  readonly tokens: number;
}

export interface Evaluation {
  readonly kld: KldStats;
  readonly layers: LayerStats[];
  readonly expertWeightErrors: ExpertWeightError[];
  /** empty when the first batch was scored by an evaluator worker (docs/cluster.md) */
  readonly expertOutputErrors: ExpertOutputError[];
  readonly windows: { readonly n: number; readonly seqLen: number };
  readonly format: string;
  readonly quantizedModules: number;
  readonly seconds: number;
  /** what was done with the quantized model's activations */
  readonly activations: ActivationTreatment;
}

const EXPERT = /\.layers\.(\d+)\..*\.experts\.(\d+)\./;

export async function evaluateCheckpoint(o: EvaluateOptions): Promise<Evaluation> {
  const t0 = Date.now();
  const ref = loadModel(o.referenceDir);
  const qc = readQuantizedCheckpoint(o.quantizedDir);
  try {
    const { spec: qspec } = buildSpec(qc.config as RawConfig, `${o.quantizedDir}/config.json`);
    // Dequantized modules and rebuilt fused tensors of the layer being evaluated only: the loop is
    // layer-major, so each is decoded once and dropped when the windows move to the next layer.
    const deq = new Map<string, Tensor>();
    const qmods = new Set(qc.quantizedModules.map((m) => `${m}.weight`));
    const passthrough = new Set(qc.passthroughNames);
    const dequantized = (n: string): Tensor => {
      let t = deq.get(n);
      if (!t) {
        const d = qc.dequantize(n.slice(0, -".weight".length));
        t = f32Tensor(d.weight, [d.rows, d.cols]);
        deq.set(n, t);
      }
      return t;
    };
    // Fused expert tensors the checkpoint stores per expert (our packer, or GPT-OSS MXFP4 read as
    // per-expert modules): rebuilt from those modules, over the reference's values for any part
    // that was not quantized.
    const fusedRoles = new Map<string, WeightRole[]>();
    for (const r of weightRoles(qspec))
      if ((r.fused || r.rowSlice) && !qmods.has(r.tensor) && !passthrough.has(r.tensor))
        fusedRoles.set(r.tensor, [...(fusedRoles.get(r.tensor) ?? []), r]);
    const refused = new Map<string, Tensor>();
    const fusedTensor = (n: string): Tensor => {
      let t = refused.get(n);
      if (!t) {
        const roles = fusedRoles.get(n)!;
        const m = refuseModules(qspec, roles, ref.source, (mod) =>
          qmods.has(`${mod}.weight`) ? tensorToF32(dequantized(`${mod}.weight`), mod) : undefined,
        );
        t = m.get(n) ?? ref.source.tensor(n);
        refused.set(n, t);
      }
      return t;
    };
    const qSource: WeightSource = {
      has: (n) => qmods.has(n) || passthrough.has(n) || fusedRoles.has(n),
      tensor: (n) => (qmods.has(n) ? dequantized(n) : fusedRoles.has(n) ? fusedTensor(n) : qc.tensor(n)),
      names: () => [...qmods, ...passthrough, ...fusedRoles.keys()],
    };
    const refEngine = ref.engine();
    const qEngine = new Engine(qspec, qSource);
    const acts = planActivations(qc, qspec, { mode: o.activations, expertInputScales: o.expertInputScales });
    if (acts.hook) qEngine.setLinearHook(acts.hook);
    const spec = ref.spec;
    const V = spec.vocabSize;
    const H = spec.hiddenSize;

    // Weight error per expert over its quantized matrices (‖Wq − W‖ / ‖W‖).
    const werr = new Map<string, RelativeErrorAccumulator>();
    const addWeightError = (layer: number, expert: number, r: Float32Array, q: Float32Array) => {
      const key = `${layer}/${expert}`;
      if (!werr.has(key)) werr.set(key, new RelativeErrorAccumulator());
      werr.get(key)!.add(r, q);
    };
    // the layer's weights go: decoded modules, rebuilt fused tensors, both engines' f32 copies
    const dropLayerWeights = () => {
      deq.clear();
      refused.clear();
      refEngine.weights.invalidate();
      qEngine.weights.invalidate();
    };
    const weightErrorsOfLayer = (L: number) => {
      for (const n of qmods) {
        const m = EXPERT.exec(n);
        if (!m || Number(m[1]) !== L || !ref.source.has(n)) continue;
        addWeightError(L, Number(m[2]), refEngine.weights.get(n), qEngine.weights.get(n));
      }
      // per-expert modules cut out of a fused reference tensor
      for (const roles of fusedRoles.values())
        for (const r of roles) {
          const mod = `${packTarget(qspec, r).module}.weight`;
          if (r.layer !== L || r.expert === null || !qmods.has(mod) || !ref.source.has(r.tensor)) continue;
          const whole = refEngine.weights.get(r.tensor);
          addWeightError(
            r.layer,
            r.expert,
            extractRoleMatrix(r, whole, ref.source.tensor(r.tensor).shape),
            qEngine.weights.get(mod),
          );
        }
    };

    const w =
      o.windows ??
      (await tokenWindows(o.texts, "eval", { modelDir: o.referenceDir, vocab: V, seed: o.seed, cacheDir: o.cacheDir }));
    const { n: N, seqLen: T } = w;
    const acc = new KldAccumulator();
    const layerErr = spec.layers.map(() => new RelativeErrorAccumulator());
    const expertErr = new Map<string, { acc: RelativeErrorAccumulator; tokens: number }>();
    /** Each expert on the rows routed to it (reference input and routing), reference vs quantized. */
    const addExpertErrors = async (L: number, x: Float32Array, routing: Routing) => {
      const rowsOf = new Map<number, number[]>();
      for (let r = 0; r < routing.rows; r++)
        for (let k = 0; k < routing.topK; k++) {
          const e = routing.indices[r * routing.topK + k];
          const rows = rowsOf.get(e);
          if (rows) rows.push(r);
          else rowsOf.set(e, [r]);
        }
      for (const [e, rows] of rowsOf) {
        const xe = new Float32Array(rows.length * H);
        for (const [i, r] of rows.entries()) xe.set(x.subarray(r * H, (r + 1) * H), i * H);
        const acc = new RelativeErrorAccumulator();
        acc.add((await refEngine.expert(L, e, xe)).out, (await qEngine.expert(L, e, xe)).out);
        expertErr.set(`${L}/${e}`, { acc, tokens: rows.length });
      }
    };
    const batch = Math.min(o.batchWindows, N);
    const batches = windowBatches(w, batch);
    const elsewhere = o.scoreElsewhere?.(batches, o);
    let layersElsewhere: LayerStats[] | undefined;
    if (elsewhere) {
      for (const [i, b] of batches.entries()) {
        const scored = await elsewhere[i];
        acc.addScores(scored.tokens);
        layersElsewhere ??= scored.layers;
        o.onProgress?.(b.b0 + b.nb, N);
      }
      for (let L = 0; L < spec.layers.length; L++) {
        weightErrorsOfLayer(L);
        dropLayerWeights();
      }
    } else {
      // Layer-major: every window through layer L, then L+1, so one layer of each model's weights
      // is decoded at a time; the hidden states of all windows (two models) are what stays.
      const seqs = batches.map((b) => refEngine.sequences(b.nb, T));
      const hr = batches.map((b, i) => refEngine.embed(b.ids, seqs[i]));
      const hq = batches.map((b, i) => qEngine.embed(b.ids, seqs[i]));
      for (let L = 0; L < spec.layers.length; L++) {
        for (const [i, b] of batches.entries()) {
          const seq = seqs[i];
          const ar = await refEngine.attention(L, hr[i], seq);
          const aq = await qEngine.attention(L, hq[i], seq);
          if (refEngine.isMoe(L)) {
            const rr = await refEngine.router(L, ar.x);
            const yr = await refEngine.moe(L, ar.x, rr);
            // The per-layer error needs an extra quantized MoE pass; the first batch is a large
            // enough sample for a relative error, and this keeps the evaluation at ~2 forwards.
            if (b.b0 === 0 && o.layerErrors !== false) {
              layerErr[L].add(yr, await qEngine.moe(L, ar.x, rr));
              await addExpertErrors(L, ar.x, rr);
            }
            hr[i] = refEngine.finishLayer(ar.residual, yr);
            hq[i] = qEngine.finishLayer(aq.residual, await qEngine.moe(L, aq.x));
          } else {
            hr[i] = refEngine.finishLayer(ar.residual, (await refEngine.mlp(L, ar.x)).out);
            hq[i] = qEngine.finishLayer(aq.residual, (await qEngine.mlp(L, aq.x)).out);
          }
        }
        weightErrorsOfLayer(L);
        dropLayerWeights();
      }
      for (const [i, b] of batches.entries()) {
        const { nb, ids } = b;
        const nr = refEngine.finalNorm(hr[i]);
        const nq = qEngine.finalNorm(hq[i]);
        // Logits one window at a time ([T, vocab] f32 of each model: 0.3 GiB at T = 256 and a
        // 152k vocabulary, where a batch of 16 windows would take 5 GiB); every position with a
        // next token in its window is scored (T − 1 per window), in window order.
        const parts: TokenScores[] = [];
        for (let bb = 0; bb < nb; bb++) {
          const rows = (x: Float32Array) => x.subarray(bb * T * H, (bb + 1) * T * H);
          const lr = await refEngine.logits(rows(nr));
          const lq = await qEngine.logits(rows(nq));
          const targets = Int32Array.from(ids.subarray(bb * T + 1, (bb + 1) * T));
          parts.push(scoreTokens(lr.subarray(0, (T - 1) * V), lq.subarray(0, (T - 1) * V), V, targets));
        }
        const scores = concatScores(parts);
        acc.addScores(scores);
        o.onBatchScored?.(b.b0, scores);
        o.onProgress?.(b.b0 + nb, N);
      }
    }
    const layers: LayerStats[] =
      layersElsewhere ??
      spec.layers.map((_, L) => ({
        layer: L,
        outputRelError: layerErr[L].elements > 0 ? layerErr[L].value : null,
        tokens: layerErr[L].elements / H,
      }));
    const expertWeightErrors = [...werr].map(([k, a]) => {
      const [layer, expert] = k.split("/").map(Number);
      return { layer, expert, relError: a.value };
    });
    expertWeightErrors.sort((a, b) => a.layer - b.layer || a.expert - b.expert);
    const expertOutputErrors = [...expertErr].map(([k, { acc, tokens }]) => {
      const [layer, expert] = k.split("/").map(Number);
      return { layer, expert, relError: acc.value, tokens };
    });
    expertOutputErrors.sort((a, b) => a.layer - b.layer || a.expert - b.expert);
    return {
      kld: acc.finish(),
      layers,
      expertWeightErrors,
      expertOutputErrors,
      windows: { n: N, seqLen: T },
      format: qc.format,
      quantizedModules: qc.quantizedModules.length,
      seconds: (Date.now() - t0) / 1000,
      activations: acts.treatment,
    };
  } finally {
    qc.close();
    ref.close();
  }
}

/** Token scores of consecutive rows, joined in order. */
function concatScores(parts: readonly TokenScores[]): TokenScores {
  const join = <A extends Float64Array | Uint8Array>(arrays: A[], make: (n: number) => A): A => {
    const out = make(arrays.reduce((n, a) => n + a.length, 0));
    let at = 0;
    for (const a of arrays) {
      out.set(a, at);
      at += a.length;
    }
    return out;
  };
  const withNll = parts.every((p) => p.nll !== null && p.nllBase !== null);
  return {
    kld: join(
      parts.map((p) => p.kld),
      (n) => new Float64Array(n),
    ),
    sameTop: join(
      parts.map((p) => p.sameTop),
      (n) => new Uint8Array(n),
    ),
    nll: withNll
      ? join(
          parts.map((p) => p.nll as Float64Array),
          (n) => new Float64Array(n),
        )
      : null,
    nllBase: withNll
      ? join(
          parts.map((p) => p.nllBase as Float64Array),
          (n) => new Float64Array(n),
        )
      : null,
  };
}

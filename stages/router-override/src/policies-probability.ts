// "The router's probability that token t goes to expert e", per routing family, for the soft
// policies and fill:N. Every expert gets a value (also the unselected ones), computed before any
// selection bias, group mask or top-k, because that is what says how close a token was to
// being routed there:
// - softmax families (softmax_topk, softmax_bias, softmax_group_limited): the softmax over all
//   E logits, i.e. Routing.scores;
// - top-k-then-softmax (GPT-OSS, Granite) and Phi-MoE's sparsemixer: the softmax over all E
//   logits too; their combine weights are that softmax renormalised over the selected (or
//   unmasked) experts, so it is the same quantity before selection;
// - sigmoid families (sigmoid_bias: DeepSeek-V3, GLM-4.5, MiniMax-M2; topk_sigmoid: Llama 4):
//   the sigmoid score σ(z_e) itself, not σ normalised over the E experts. σ(z_e) is the router's
//   own independent gate for e; dividing by Σ_e' σ(z_e') would reweight each token by how much
//   it likes *other* experts (with E = 256 that sum is a per-token constant plus noise) and
//   would shrink every weight by ~E. The routed_scaling_factor is left out: a uniform factor on
//   one expert's weights does not change its GPTQ solution (damping is relative to mean diag H).
import type { Routing, RoutingSpec } from "@moeq/models";

function softmaxRows(z: Float32Array, rows: number, E: number): Float32Array {
  const p = new Float32Array(rows * E);
  for (let t = 0; t < rows; t++) {
    let m = Number.NEGATIVE_INFINITY;
    for (let e = 0; e < E; e++) m = Math.max(m, z[t * E + e]);
    let s = 0;
    for (let e = 0; e < E; e++) s += Math.exp(z[t * E + e] - m);
    for (let e = 0; e < E; e++) p[t * E + e] = Math.exp(z[t * E + e] - m) / s;
  }
  return p;
}

function sigmoid(z: Float32Array): Float32Array {
  const p = new Float32Array(z.length);
  for (let i = 0; i < z.length; i++) p[i] = 1 / (1 + Math.exp(-z[i]));
  return p;
}

/** A fresh [rows, E] matrix (callers may modify it). */
export function routerProbabilities(r: Routing, spec: RoutingSpec): Float32Array {
  const n = r.rows * r.numExperts;
  switch (spec.kind) {
    case "softmax_topk":
    case "softmax_bias":
    case "softmax_group_limited":
      if (r.scores.length === n) return r.scores.slice();
      return softmaxRows(needLogits(r, spec), r.rows, r.numExperts);
    case "topk_softmax":
    case "sparsemixer":
      return softmaxRows(needLogits(r, spec), r.rows, r.numExperts);
    case "sigmoid_bias":
      if (r.scores.length === n) return r.scores.slice();
      return sigmoid(needLogits(r, spec));
    case "topk_sigmoid":
      return sigmoid(needLogits(r, spec));
  }
}

function needLogits(r: Routing, spec: RoutingSpec): Float32Array {
  if (r.logits.length !== r.rows * r.numExperts)
    throw new RangeError(
      `router probabilities (${spec.kind}): expected [${r.rows}, ${r.numExperts}] logits, got ${r.logits.length} values`,
    );
  return r.logits;
}

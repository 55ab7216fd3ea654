// The MoE block: router → routing → each selected expert on its rows, combined with the routing
// weights (accumulated in f32), plus an optional shared expert (optionally sigmoid-gated).
import { native } from "@moeq/native";
import type { MoeSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";
import { expertForward } from "./experts.ts";
import { linear } from "./linear.ts";
import { denseMlp } from "./mlp.ts";
import { type Routing, route } from "./routing.ts";

export async function routerForward(w: F32Weights, spec: MoeSpec, x: Float32Array, rows: number): Promise<Routing> {
  const E = spec.experts.numExperts;
  const logits = await linear(w, spec.router, x, rows);
  const r = spec.routing;
  const bias = "bias" in r && r.bias ? w.get(r.bias, E) : null;
  return route(r, logits, rows, E, bias);
}

/** Rows of x routed to each expert, with the weight each row gives it. */
export function dispatch(routing: Routing): { rows: Int32Array; weights: Float32Array }[] {
  const { rows, topK: k, numExperts: E, indices, weights } = routing;
  const count = new Int32Array(E);
  for (let i = 0; i < rows * k; i++) count[indices[i]]++;
  const out = Array.from({ length: E }, (_, e) => ({
    rows: new Int32Array(count[e]),
    weights: new Float32Array(count[e]),
  }));
  const fill = new Int32Array(E);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < k; j++) {
      const e = indices[r * k + j];
      out[e].rows[fill[e]] = r;
      out[e].weights[fill[e]++] = weights[r * k + j];
    }
  return out;
}

export async function moeForward(
  w: F32Weights,
  spec: MoeSpec,
  x: Float32Array,
  rows: number,
  routing: Routing,
): Promise<Float32Array> {
  const H = spec.experts.hidden;
  const out = new Float32Array(rows * H);
  const groups = dispatch(routing);
  for (let e = 0; e < groups.length; e++) {
    const g = groups[e];
    const n = g.rows.length;
    if (n === 0) continue;
    const xs = new Float32Array(n * H);
    for (let i = 0; i < n; i++) xs.set(x.subarray(g.rows[i] * H, (g.rows[i] + 1) * H), i * H);
    // Llama 4 scales the expert's input by its routing weight, and sums the outputs unweighted
    if (spec.weightScalesInput)
      for (let i = 0; i < n; i++) for (let c = 0; c < H; c++) xs[i * H + c] = Math.fround(xs[i * H + c] * g.weights[i]);
    const { out: y } = await expertForward(w, spec.experts, e, xs, n);
    for (let i = 0; i < n; i++) {
      const o = g.rows[i] * H;
      const s = spec.weightScalesInput ? 1 : g.weights[i];
      for (let c = 0; c < H; c++) out[o + c] += y[i * H + c] * s;
    }
  }
  if (spec.shared) {
    const { out: ys } = await denseMlp(w, spec.shared.mlp, x, rows);
    if (spec.shared.gate) {
      const gl = await linear(w, spec.shared.gate, x, rows);
      native.activationF32("sigmoid", gl, gl);
      for (let r = 0; r < rows; r++) for (let c = 0; c < H; c++) out[r * H + c] += gl[r] * ys[r * H + c];
    } else for (let i = 0; i < out.length; i++) out[i] += ys[i];
  }
  return out;
}

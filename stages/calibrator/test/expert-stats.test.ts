// Routed-expert statistics come from the input the expert really multiplies. Llama 4 scales an
// expert's input by its router score (sigmoid of the logit) before the expert, so its gate_up
// Hessian is Σ w·(s·x)(s·x)ᵀ and its down_proj input is act of those scaled rows — for routed
// tokens and for the tokens a policy adds alike. Checked against a float64 computation written
// here from the checkpoint (router, fused transposed gate_up), not the engine's blocks; a model
// without input scaling (qwen2_moe) keeps x unscaled.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, tensorToF32 } from "@moeq/models";
import { deviceKernels } from "@moeq/native";
import { quantTargets, targetKey } from "@moeq/runtime";
import { describe, expect, it } from "vitest";
import { expertInputStatistics, routerInputScores } from "../src/expert-stats.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const fixture = (name: string) => join(root, "..", "shared", "fixtures", "tiny-random", name);
const kernels = deviceKernels({ kind: "cpu" });

const relErr = (got: ArrayLike<number>, want: ArrayLike<number>) => {
  let e = 0;
  let s = 0;
  for (let i = 0; i < want.length; i++) {
    e = Math.max(e, Math.abs(got[i] - want[i]));
    s = Math.max(s, Math.abs(want[i]));
  }
  return e / s;
};

function weightedGram(x: Float64Array, rows: number, k: number, w: ArrayLike<number>): Float64Array {
  const h = new Float64Array(k * k);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) h[i * k + j] += w[r] * x[r * k + i] * x[r * k + j];
  return h;
}

async function moeInput(name: string, L: number) {
  const model = loadModel(fixture(name));
  const e = model.engine();
  const [B, T] = [2, 12];
  const seq = e.sequences(B, T);
  const ids = Array.from({ length: B * T }, (_, i) => (i * 53 + 7) % model.spec.vocabSize);
  let h = e.embed(ids, seq);
  for (let l = 0; l < L; l++) h = await e.runLayer(l, h, seq);
  const { x } = await e.attention(L, h, seq);
  return { model, engine: e, x, routing: await e.router(L, x), rows: B * T };
}

describe("routed-expert statistics", () => {
  it("Llama 4: gate_up and down Hessians of every policy token use the input scaled by the router score", async () => {
    const L = 1;
    const { model, engine, x, routing, rows } = await moeInput("llama4_text", L);
    try {
      const m = model.spec.layers[L].mlp;
      if (m.kind !== "moe") throw new Error("llama4_text layer 1 is MoE");
      const { hidden: H, intermediate: I, numExperts: E } = m.experts;
      const p = `model.layers.${L}.feed_forward`;
      const router = Float64Array.from(tensorToF32(model.source.tensor(`${p}.router.weight`), "router"));
      const gu = tensorToF32(model.source.tensor(`${p}.experts.gate_up_proj`), "gate_up"); // [E, H, 2I]
      // an "all"-like policy: every token, weight 0.5 + its position's share, routed or not
      const used = Array.from({ length: rows }, (_, t) => t);
      const w = Float32Array.from(used, (t) => 0.5 + t / rows);
      for (const e of [0, 3]) {
        const targets = quantTargets(model.arch, model.spec, "experts").filter((t) => t.layer === L && t.expert === e);
        const scores = routerInputScores(m, routing.logits);
        const stats = await expertInputStatistics({
          engine,
          L,
          e,
          x,
          used,
          w,
          routing,
          scores,
          targets,
          kernels,
          hessians: true,
        });
        // float64 reference: s_t = σ(x_t·r_e), xs = s·x, act = silu(xs·G)·(xs·U)
        const xs = new Float64Array(rows * H);
        const act = new Float64Array(rows * I);
        let routedHere = 0;
        for (let t = 0; t < rows; t++) {
          let logit = 0;
          for (let c = 0; c < H; c++) logit += x[t * H + c] * router[e * H + c];
          const s = 1 / (1 + Math.exp(-logit));
          if (routing.indices[t] === e) routedHere++;
          for (let c = 0; c < H; c++) xs[t * H + c] = x[t * H + c] * s;
          for (let j = 0; j < I; j++) {
            let g = 0;
            let u = 0;
            for (let c = 0; c < H; c++) {
              g += xs[t * H + c] * gu[e * H * 2 * I + c * 2 * I + j];
              u += xs[t * H + c] * gu[e * H * 2 * I + c * 2 * I + I + j];
            }
            act[t * I + j] = (g / (1 + Math.exp(-g))) * u;
          }
        }
        expect(E).toBeGreaterThan(e);
        // both kinds of tokens are in the sum: routed to e and added by the policy
        expect(routedHere).toBeGreaterThan(0);
        expect(routedHere).toBeLessThan(rows);
        const gate = targets.find((t) => t.proj === "gate_proj")!;
        const up = targets.find((t) => t.proj === "up_proj")!;
        const down = targets.find((t) => t.proj === "down_proj")!;
        const sg = stats.stats(gate)!;
        expect(stats.stats(up)).toBe(sg); // fused gate_up: one input, one Hessian
        expect(sg.tokens).toBe(rows);
        expect(sg.weightMass).toBeCloseTo(
          w.reduce((a, b) => a + b, 0),
          4,
        );
        expect(relErr(sg.hessian, weightedGram(xs, rows, H, w))).toBeLessThan(1e-5);
        expect(relErr(stats.stats(down)!.hessian, weightedGram(act, rows, I, w))).toBeLessThan(1e-5);
        // unscaled x would be a very different Hessian (σ² ≈ ¼ on average)
        expect(relErr(sg.hessian, weightedGram(Float64Array.from(x), rows, H, w))).toBeGreaterThan(0.1);
        expect(sg.absmax).toBeCloseTo(
          xs.reduce((a, v) => Math.max(a, Math.abs(v)), 0),
          5,
        );
        expect(targetKey(gate)).toBe(`${L}/${e}/gate_proj`);
      }
    } finally {
      model.close();
    }
  });

  it("an architecture without input scaling (qwen2_moe) gathers x itself", async () => {
    const L = 0;
    const { model, engine, x, routing } = await moeInput("qwen2_moe", L);
    try {
      const H = model.spec.hiddenSize;
      const e = routing.indices[0];
      const used = [0, 3, 5, 8, 13];
      const w = Float32Array.from(used, (_, i) => 1 + i);
      const targets = quantTargets(model.arch, model.spec, "experts").filter((t) => t.layer === L && t.expert === e);
      const stats = await expertInputStatistics({
        engine,
        L,
        e,
        x,
        used,
        w,
        routing,
        scores: null,
        targets,
        kernels,
        hessians: true,
      });
      const xe = new Float64Array(used.length * H);
      for (const [i, t] of used.entries()) xe.set(x.subarray(t * H, (t + 1) * H), i * H);
      const gate = stats.stats(targets.find((t) => t.proj === "gate_proj")!)!;
      expect(stats.stats(targets.find((t) => t.proj === "up_proj")!)).toBe(gate); // separate matrices, same input
      expect(relErr(gate.hessian, weightedGram(xe, used.length, H, w))).toBeLessThan(1e-5);
      expect(stats.stats(targets.find((t) => t.proj === "down_proj")!)!.tokens).toBe(used.length);
    } finally {
      model.close();
    }
  });
});

// The layer-at-a-time API the calibrator and evaluator use must compose back into forward(),
// weight sources must be swappable, and batching must not mix sequences.
import { join } from "node:path";
import {
  Engine,
  type ExpertsSpec,
  expertForward,
  F32Weights,
  loadModel,
  ModelInputError,
  mapSource,
  overlaySource,
  type Routing,
} from "@moeq/models";
import { f32Tensor, type Tensor } from "@moeq/tensor";
import { afterAll, describe, expect, it } from "vitest";
import { maxRelErr, tinyRandom } from "./fixtures.ts";

const model = loadModel(join(tinyRandom, "qwen2_moe"));
afterAll(() => model.close());
const H = model.spec.hiddenSize;
const ids = (B: number, T: number, seed = 1) =>
  Array.from({ length: B * T }, (_, i) => (i * 37 + seed * 11) % model.spec.vocabSize);

describe("layer-at-a-time API", () => {
  it("embed → attention → router → moe → finishLayer → final norm → logits equals forward()", async () => {
    const e = model.engine();
    const [B, T] = [2, 9];
    const tok = ids(B, T);
    const full = await e.forward(tok, B, T);
    const seq = e.sequences(B, T);
    let h = e.embed(tok, seq);
    for (let L = 0; L < e.numLayers; L++) {
      const { residual, x } = await e.attention(L, h, seq);
      const routing = await e.router(L, x);
      h = e.finishLayer(residual, await e.moe(L, x, routing));
    }
    const logits = await e.logits(e.finalNorm(h));
    expect(Array.from(logits)).toEqual(Array.from(full.logits));
  });

  it("the MoE output is Σ weight·expert(row) + the gated shared expert, and expert() returns down_proj's input", async () => {
    const e = model.engine();
    const seq = e.sequences(1, 7);
    const h = e.embed(ids(1, 7, 3), seq);
    const { x } = await e.attention(0, h, seq);
    const r = await e.router(0, x);
    expect(r.indices.length).toBe(7 * r.topK);
    // routed part alone: zero the shared expert by overlaying a zero down_proj
    const zero = (name: string) => {
      const t = model.source.tensor(name);
      return f32Tensor(new Float32Array(t.shape[0] * t.shape[1]), t.shape);
    };
    const shared = "model.layers.0.mlp.shared_expert.down_proj.weight";
    const e2 = new Engine(model.spec, overlaySource(model.source, new Map([[shared, zero(shared)]])));
    const routed = await e2.moe(0, x, r);
    const want = new Float64Array(7 * H);
    for (let row = 0; row < 7; row++)
      for (let j = 0; j < r.topK; j++) {
        const ex = r.indices[row * r.topK + j];
        const { out, act } = await e.expert(0, ex, x.subarray(row * H, (row + 1) * H));
        expect(act.length).toBe(32);
        for (let c = 0; c < H; c++) want[row * H + c] += r.weights[row * r.topK + j] * out[c];
      }
    expect(maxRelErr(routed, Float32Array.from(want))).toBeLessThan(1e-6);
  });

  it("moe() follows a given routing (the calibrator can force experts)", async () => {
    const e = model.engine();
    const seq = e.sequences(1, 5);
    const { x } = await e.attention(1, e.embed(ids(1, 5), seq), seq);
    const r = await e.router(1, x);
    const forced: Routing = {
      ...r,
      indices: new Int32Array(r.indices.length).fill(3),
      weights: new Float32Array(r.weights.length).fill(0.5),
    };
    const a = await e.moe(1, x, forced);
    const b = await e.moe(1, x, r);
    expect(maxRelErr(a, b)).toBeGreaterThan(1e-3);
  });

  it("overlaying a weight changes the output; setSource invalidates the f32 cache", async () => {
    const e = model.engine();
    const base = await e.forward(ids(1, 6), 1, 6);
    const name = "model.layers.1.self_attn.o_proj.weight";
    const t = model.source.tensor(name);
    const scaled = f32Tensor(new Float32Array(t.shape[0] * t.shape[1]).fill(0.05), t.shape);
    e.setSource(overlaySource(model.source, new Map([[name, scaled]])), [name]);
    const changed = await e.forward(ids(1, 6), 1, 6);
    e.setSource(model.source, [name]);
    const back = await e.forward(ids(1, 6), 1, 6);
    expect(maxRelErr(changed.logits, base.logits)).toBeGreaterThan(1e-4);
    expect(Array.from(back.logits)).toEqual(Array.from(base.logits));
  });

  it("a batch equals its sequences run one by one", async () => {
    const e = model.engine();
    const T = 11;
    const a = ids(1, T, 1);
    const b = ids(1, T, 2);
    const both = await e.forward([...a, ...b], 2, T);
    const ra = await e.forward(a, 1, T);
    const rb = await e.forward(b, 1, T);
    const V = model.spec.vocabSize;
    expect(maxRelErr(both.logits.subarray(0, T * V), ra.logits)).toBeLessThan(1e-6);
    expect(maxRelErr(both.logits.subarray(T * V), rb.logits)).toBeLessThan(1e-6);
  });

  it("bad inputs are ModelInputErrors", async () => {
    const e = model.engine();
    await expect(e.forward([1, 2, 3], 2, 2)).rejects.toBeInstanceOf(ModelInputError);
    await expect(e.forward([1, 99999], 1, 2)).rejects.toThrow(/token id 99999 at position 1 is outside the vocabulary/);
    expect(() => e.layer(7)).toThrow(/layer 7 is out of range/);
    await expect(e.expert(0, 8, new Float32Array(H))).rejects.toThrow(/expert 8 is out of range/);
  });
});

describe("fused expert layouts", () => {
  // Build fused [E, 2I, H] / [E, H, I] tensors (and transposed / interleaved variants) from the
  // per-expert weights: every layout must give the per-expert result.
  const m = model.spec.layers[0].mlp;
  if (m.kind !== "moe") throw new Error("layer 0 of qwen2_moe is MoE");
  const { numExperts: E, intermediate: I } = m.experts;
  const w = new F32Weights(model.source);
  const per = (e: number, p: string) => w.get(`model.layers.0.mlp.experts.${e}.${p}.weight`);
  const x = Float32Array.from({ length: 5 * H }, (_, i) => Math.sin(i) * 0.7);

  for (const split of ["halves", "interleaved"] as const)
    for (const transposed of [false, true])
      it(`split=${split} transposed=${transposed}`, async () => {
        const gu = new Float32Array(E * 2 * I * H);
        const dn = new Float32Array(E * H * I);
        for (let e = 0; e < E; e++) {
          const [g, u, d] = [per(e, "gate_proj"), per(e, "up_proj"), per(e, "down_proj")];
          for (let i = 0; i < I; i++)
            for (let h = 0; h < H; h++) {
              const rg = split === "halves" ? i : 2 * i;
              const ru = split === "halves" ? I + i : 2 * i + 1;
              const at = (row: number) => (transposed ? e * 2 * I * H + h * 2 * I + row : e * 2 * I * H + row * H + h);
              gu[at(rg)] = g[i * H + h];
              gu[at(ru)] = u[i * H + h];
              dn[transposed ? e * H * I + i * H + h : e * H * I + h * I + i] = d[h * I + i];
            }
        }
        const tensors = new Map<string, Tensor>([
          ["gu", f32Tensor(gu, transposed ? [E, H, 2 * I] : [E, 2 * I, H])],
          ["dn", f32Tensor(dn, transposed ? [E, I, H] : [E, H, I])],
        ]);
        const fused: ExpertsSpec = {
          ...m.experts,
          layout: { kind: "fused", gateUp: "gu", down: "dn", split, transposed },
        };
        const fw = new F32Weights(mapSource(tensors));
        for (const e of [0, 3, E - 1]) {
          const a = await expertForward(fw, fused, e, x, 5);
          const b = await expertForward(w, m.experts, e, x, 5);
          expect(maxRelErr(a.out, b.out)).toBeLessThan(1e-6);
          expect(maxRelErr(a.act, b.act)).toBeLessThan(1e-6);
        }
      });
});

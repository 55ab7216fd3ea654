// The linear-input hook (Engine.setLinearHook): an observer sees every quantizable Linear's input
// (attention/MLA/DeltaNet/indexer, dense MLP, shared and routed experts in every on-disk layout)
// without changing the forward; a transform really replaces the input its GEMM multiplies (checked
// against zeroing the weight itself, an independent route to the same output); Llama 4's experts
// see their input scaled by the router score.
import { join } from "node:path";
import {
  Engine,
  type LinearCall,
  type LinearHook,
  loadModel,
  ModelInputError,
  overlaySource,
  tensorToF32,
  weightRoles,
} from "@moeq/models";
import { f32Tensor } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import { maxRelErr, tinyRandom } from "./fixtures.ts";

// one fixture per distinct path through the blocks: per-expert + gated shared expert (qwen2_moe),
// MLA + dense first layer (deepseek_v3), MLA + DSA indexer (deepseek_v32), DeltaNet (qwen3_next),
// fused transposed halves + input-scaling router (llama4_text), fused halves (granitemoe), fused
// interleaved with biases + sinks (gpt_oss), stacked experts + row-sliced Wqkv (dbrx)
const FIXTURES = [
  "qwen2_moe",
  "deepseek_v3",
  "deepseek_v32",
  "qwen3_next",
  "llama4_text",
  "granitemoe",
  "gpt_oss",
  "dbrx",
];
const B = 2;
const T = 12; // above deepseek_v32's index_topk (8), so the indexer runs
const ids = (V: number) => Array.from({ length: B * T }, (_, i) => (i * 37 + 5) % V);

const key = (c: Pick<LinearCall, "layer" | "expert" | "weight" | "projection">) =>
  `${c.layer}/${c.expert ?? "-"}/${c.weight}/${c.projection}`;

describe.each(FIXTURES)("linear hook on %s", (name) => {
  it("an observer sees every quantizable linear once per application and leaves the logits bit for bit", async () => {
    const model = loadModel(join(tinyRandom, name));
    try {
      const tok = ids(model.spec.vocabSize);
      const plain = await model.engine().forward(tok, B, T);
      const e = model.engine();
      const seen = new Map<string, number>();
      let removed = false;
      let callsAfterRemoval = 0;
      e.setLinearHook((c, x, rows, k) => {
        if (removed) callsAfterRemoval++;
        expect(x.length).toBe(rows * k);
        seen.set(key(c), (seen.get(key(c)) ?? 0) + 1);
        return x;
      });
      const hooked = await e.forward(tok, B, T);
      expect(maxRelErr(hooked.logits, plain.logits)).toBe(0);

      const roles = weightRoles(model.spec);
      const expertsSeen = new Set(
        [...seen.keys()].filter((k) => !k.split("/")[1].startsWith("-")).map((k) => k.split("/").slice(0, 2).join("/")),
      );
      expect(expertsSeen.size).toBeGreaterThan(0);
      for (const r of roles) {
        if (r.expert !== null && !expertsSeen.has(`${r.layer}/${r.expert}`)) continue; // expert got no tokens
        // a fused gate_up tensor is one GEMM: its one call is labelled gate_proj
        const projection = r.fused && !r.fused.stacked && r.projection === "up_proj" ? "gate_proj" : r.projection;
        const k = key({ ...r, weight: r.tensor, projection });
        // non-expert linears run once per forward; DBRX's q/k/v are three applications of one Wqkv
        expect(seen.get(k), k).toBeGreaterThanOrEqual(1);
        if (r.expert === null) expect(seen.get(k), k).toBe(1);
      }
      // nothing outside the roles (routers, shared-expert gate, lm_head are not hooked)
      const roleKeys = new Set(roles.map((r) => `${r.layer}/${r.tensor}`));
      for (const k of seen.keys()) {
        const [layer, , weight] = k.split("/");
        expect(roleKeys.has(`${layer}/${weight}`), k).toBe(true);
      }

      e.setLinearHook(undefined);
      removed = true;
      const again = await e.forward(tok, B, T);
      expect(callsAfterRemoval).toBe(0);
      expect(maxRelErr(again.logits, plain.logits)).toBe(0);
    } finally {
      model.close();
    }
  });

  it("a transform replaces what the GEMM multiplies: zeroing one input = zeroing that weight", async () => {
    const model = loadModel(join(tinyRandom, name));
    try {
      const tok = ids(model.spec.vocabSize);
      // pick the last layer's output projection and the down_proj of the first expert that runs
      const probe = model.engine();
      const calls: LinearCall[] = [];
      probe.setLinearHook((c, x) => {
        calls.push(c);
        return x;
      });
      await probe.forward(tok, B, T);
      const last = model.spec.layers.length - 1;
      const out = calls.find((c) => c.layer === last && (c.projection === "o_proj" || c.projection === "out_proj"));
      const down = calls.find((c) => c.expert !== null && c.projection === "down_proj");
      expect(out && down).toBeTruthy();
      for (const target of [out!, down!]) {
        const e = model.engine();
        e.setLinearHook((c, x) => (key(c) === key(target) ? new Float32Array(x.length) : x));
        const zeroedInput = await e.forward(tok, B, T);
        // the same matrix zeroed in the weights: the whole tensor, or expert e's contiguous block
        const t = model.source.tensor(target.weight);
        const f = tensorToF32(t, target.weight).slice();
        const m = model.spec.layers[target.layer].mlp;
        if (target.expert === null || (m.kind === "moe" && m.experts.layout.kind === "per_expert")) f.fill(0);
        else {
          const n = f.length / (m.kind === "moe" ? m.experts.numExperts : 1);
          f.fill(0, target.expert * n, (target.expert + 1) * n);
        }
        const z = new Engine(
          model.spec,
          overlaySource(model.source, new Map([[target.weight, f32Tensor(f, [...t.shape])]])),
        );
        const zeroedWeight = await z.forward(tok, B, T);
        expect(maxRelErr(zeroedInput.logits, zeroedWeight.logits), key(target)).toBe(0);
        const plain = await model.engine().forward(tok, B, T);
        expect(maxRelErr(zeroedInput.logits, plain.logits), key(target)).toBeGreaterThan(0);
      }
    } finally {
      model.close();
    }
  });
});

describe("linear hook semantics", () => {
  it("Llama 4: a routed expert's gate_up input is its rows of x scaled by the router's sigmoid score", async () => {
    const model = loadModel(join(tinyRandom, "llama4_text"));
    try {
      const e = model.engine();
      const H = model.spec.hiddenSize;
      const seq = e.sequences(B, T);
      const { x } = await e.attention(0, e.embed(ids(model.spec.vocabSize), seq), seq);
      const r = await e.router(0, x);
      const got = new Map<number, Float32Array>();
      e.setLinearHook((c, xi) => {
        if (c.expert !== null && c.projection === "gate_proj") got.set(c.expert, xi.slice());
        return xi;
      });
      await e.moe(0, x, r);
      expect(got.size).toBeGreaterThan(1);
      const E = r.numExperts;
      for (const [ex, xi] of got) {
        const rows: number[] = [];
        for (let t = 0; t < r.rows; t++) if (r.indices[t] === ex) rows.push(t); // top-1
        const want = new Float32Array(rows.length * H);
        rows.forEach((t, i) => {
          const s = 1 / (1 + Math.exp(-r.logits[t * E + ex]));
          for (let c = 0; c < H; c++) want[i * H + c] = x[t * H + c] * s;
        });
        expect(xi.length).toBe(want.length);
        expect(maxRelErr(xi, want)).toBeLessThan(1e-6);
      }
    } finally {
      model.close();
    }
  });

  it("a hook that returns the wrong length is a ModelInputError naming the tensor", async () => {
    const model = loadModel(join(tinyRandom, "qwen2_moe"));
    try {
      const e = model.engine();
      const bad: LinearHook = (c, x) => (c.projection === "o_proj" ? x.subarray(1) : x);
      e.setLinearHook(bad);
      const err = await e.forward(ids(model.spec.vocabSize), B, T).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(ModelInputError);
      expect((err as ModelInputError).message).toContain("model.layers.0.self_attn.o_proj.weight");
    } finally {
      model.close();
    }
  });
});

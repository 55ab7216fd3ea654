// DeepSeek-V3.2 sparse attention: the indexer's top-k key selection against a plain-JS reference
// computed here from the checkpoint's weights (layer 0, where the input is the embedding), the
// sparse attention against the dense kernel when every causal key is selected, and the effect of
// the selection on the forward pass (index_topk < sequence length vs ≥).
import { join } from "node:path";
import {
  buildSpec,
  Engine,
  indexerScores,
  loadModel,
  type MlaSpec,
  ropeTables,
  selectKeys,
  sparseAttention,
  storeSource,
  tensorToF32,
} from "@moeq/models";
import { native } from "@moeq/native";
import { openSafetensors } from "@moeq/safetensors";
import { describe, expect, it } from "vitest";
import { maxRelErr, tinyRandom } from "./fixtures.ts";

const dir = join(tinyRandom, "deepseek_v32");

function goldenIds() {
  const g = openSafetensors(join(dir, "golden.safetensors"));
  try {
    const t = g.tensor("input_ids");
    return { ids: Array.from(new BigInt64Array(t.data.slice().buffer), Number), B: t.shape[0], T: t.shape[1] };
  } finally {
    g.close();
  }
}

/** y[r, o] = Σ_i x[r, i]·W[o, i] in doubles. */
function matmulT(x: ArrayLike<number>, W: Float32Array, rows: number, out: number, inp: number): Float64Array {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inp; i++) s += x[r * inp + i] * W[o * inp + i];
      y[r * out + o] = s;
    }
  return y;
}

function rmsRows(x: Float64Array, d: number, w: Float32Array, eps: number) {
  for (let i = 0; i < x.length; i += d) {
    let m = 0;
    for (let j = 0; j < d; j++) m += x[i + j] ** 2;
    const r = 1 / Math.sqrt(m / d + eps);
    for (let j = 0; j < d; j++) x[i + j] = x[i + j] * r * w[j];
  }
}

/** Half-split RoPE on the first rd dims of each `d`-wide head, angle p·θ^(−2i/rd). */
function ropeHalf(x: Float64Array, d: number, rd: number, pos: (row: number) => number, theta: number) {
  for (let i = 0, row = 0; i < x.length; i += d, row++) {
    const p = pos(row);
    for (let j = 0; j < rd / 2; j++) {
      const a = p * theta ** ((-2 * j) / rd);
      const [u, v] = [x[i + j], x[i + j + rd / 2]];
      x[i + j] = u * Math.cos(a) - v * Math.sin(a);
      x[i + j + rd / 2] = v * Math.cos(a) + u * Math.sin(a);
    }
  }
}

describe("DeepSeek-V3.2 indexer (DSA)", { timeout: 60_000 }, () => {
  it("selects the same top-k keys as a plain reference on layer 0", async () => {
    const model = loadModel(dir);
    try {
      const { ids, B, T } = goldenIds();
      const cfg = model.config as Record<string, number>;
      const spec = model.spec;
      const att = spec.layers[0].attention as MlaSpec;
      const ix = att.indexer;
      if (!ix) throw new Error("deepseek_v32 layer 0 has no indexer");
      expect(ix.topK).toBeLessThan(T);
      const get = (n: string) => tensorToF32(model.source.tensor(n), n);
      const H = spec.hiddenSize;
      const p = "model.layers.0";
      // reference, in doubles
      const emb = get("model.embed_tokens.weight");
      const x = new Float64Array(B * T * H);
      for (let r = 0; r < B * T; r++) for (let c = 0; c < H; c++) x[r * H + c] = emb[ids[r] * H + c];
      rmsRows(x, H, get(`${p}.input_layernorm.weight`), cfg.rms_norm_eps);
      const qr = cfg.q_lora_rank;
      const qLat = matmulT(x, get(`${p}.self_attn.q_a_proj.weight`), B * T, qr, H);
      rmsRows(qLat, qr, get(`${p}.self_attn.q_a_layernorm.weight`), 1e-6);
      const [Hi, Di, R] = [cfg.index_n_heads, cfg.index_head_dim, cfg.qk_rope_head_dim];
      const q = matmulT(qLat, get(`${p}.self_attn.indexer.wq_b.weight`), B * T, Hi * Di, qr);
      const k = matmulT(x, get(`${p}.self_attn.indexer.wk.weight`), B * T, Di, H);
      const [lw, lb] = [get(`${p}.self_attn.indexer.k_norm.weight`), get(`${p}.self_attn.indexer.k_norm.bias`)];
      for (let i = 0; i < k.length; i += Di) {
        let mean = 0;
        for (let j = 0; j < Di; j++) mean += k[i + j] / Di;
        let v = 0;
        for (let j = 0; j < Di; j++) v += (k[i + j] - mean) ** 2 / Di;
        for (let j = 0; j < Di; j++) k[i + j] = ((k[i + j] - mean) / Math.sqrt(v + 1e-6)) * lw[j] + lb[j];
      }
      const theta = 10000;
      ropeHalf(q, Di, R, (row) => Math.floor(row / Hi) % T, theta);
      ropeHalf(k, Di, R, (row) => row % T, theta);
      const wts = matmulT(x, get(`${p}.self_attn.indexer.weights_proj.weight`), B * T, Hi, H);
      const refSel: number[][] = [];
      for (let b = 0; b < B; b++)
        for (let t = 0; t < T; t++) {
          const sc: { s: number; v: number }[] = [];
          for (let s = 0; s <= t; s++) {
            let tot = 0;
            for (let h = 0; h < Hi; h++) {
              let d = 0;
              for (let e = 0; e < Di; e++) d += q[((b * T + t) * Hi + h) * Di + e] * k[(b * T + s) * Di + e];
              tot += wts[(b * T + t) * Hi + h] * Hi ** -0.5 * Math.max(0, d * Di ** -0.5);
            }
            sc.push({ s, v: tot });
          }
          sc.sort((u, w) => w.v - u.v);
          refSel.push(
            sc
              .slice(0, ix.topK)
              .map((e) => e.s)
              .sort((u, w) => u - w),
          );
        }
      // library, from the same normed input and q latent (as f32)
      const engine = model.engine();
      const seq = engine.sequences(B, T);
      const scores = await indexerScores(
        engine.weights,
        ix,
        Float32Array.from(x),
        Float32Array.from(qLat),
        seq,
        ropeTables(ix.rope, T),
      );
      const sel = selectKeys(scores, B, T, ix.topK);
      let truncated = 0;
      for (let r = 0; r < B * T; r++) {
        const got = [...sel.subarray(r * ix.topK, (r + 1) * ix.topK)].filter((s) => s >= 0).sort((u, w) => u - w);
        expect(got, `query row ${r}`).toEqual(refSel[r]);
        if ((r % T) + 1 > ix.topK) truncated++;
      }
      // most queries see more causal keys than index_topk: the selection is doing real work
      expect(truncated).toBeGreaterThan((B * T) / 2);
    } finally {
      model.close();
    }
  });

  it("index_topk below the sequence length changes the forward pass; at or above it is dense", async () => {
    const model = loadModel(dir);
    try {
      const { ids, B, T } = goldenIds();
      const run = async (topk: number) => {
        const { spec } = buildSpec({ ...model.config, index_topk: topk });
        return (await new Engine(spec, storeSource(model.checkpoint)).forward(ids, B, T)).logits;
      };
      const sparse = await run(model.config.index_topk as number);
      const dense = await run(T);
      const denser = await run(10 * T);
      expect(maxRelErr(sparse, dense)).toBeGreaterThan(1e-3);
      expect(maxRelErr(denser, dense)).toBe(0);
      // the sparse pass is the one transformers computes (the golden)
      const g = openSafetensors(join(dir, "golden.safetensors"));
      try {
        expect(maxRelErr(sparse, g.f32("logits"))).toBeLessThan(1e-4);
        expect(maxRelErr(dense, g.f32("logits"))).toBeGreaterThan(1e-3);
      } finally {
        g.close();
      }
    } finally {
      model.close();
    }
  });

  it("sparse attention over every causal key equals the dense causal kernel (odd sizes)", () => {
    let seed = 9;
    const r = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32 - 0.5;
    };
    for (const [B, T, H, D, Dv] of [
      [1, 1, 1, 3, 2],
      [2, 7, 3, 5, 4],
      [1, 13, 2, 9, 7],
    ]) {
      const q = Float32Array.from({ length: B * T * H * D }, r);
      const k = Float32Array.from({ length: B * T * H * D }, r);
      const v = Float32Array.from({ length: B * T * H * Dv }, r);
      const sel = new Int32Array(B * T * T).fill(-1);
      for (let row = 0; row < B * T; row++) for (let s = 0; s <= row % T; s++) sel[row * T + s] = s;
      const got = new Float32Array(B * T * H * Dv);
      sparseAttention(q, k, v, got, sel, {
        batch: B,
        seqLen: T,
        numHeads: H,
        headDim: D,
        vHeadDim: Dv,
        scale: 0.37,
        topK: T,
      });
      const want = new Float32Array(got.length);
      native.attentionF32Ref(q, k, v, want, {
        batch: B,
        seqLen: T,
        numHeads: H,
        headDim: D,
        vHeadDim: Dv,
        scale: 0.37,
        causal: true,
      });
      expect(maxRelErr(got, want)).toBeLessThan(1e-6);
    }
  });
});

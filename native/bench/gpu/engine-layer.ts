// Times one Qwen3-30B-A3B-shaped layer forward through the device engine (kernel-level benchmark
// of the engine API, not the product command): hidden 2048, 32 heads / 4 kv heads, head dim 128,
// 128 experts top-8, moe 768, random bf16 weights, random input made on the device.
//   node engine-layer.mjs [--seqs 512] [--seq-len 2048] [--precision tf32] [--out layer.json]
// Phases: attention (norms, q/k/v/o, RoPE, q/k norm, cuBLAS attention, residual), router (on the
// device), MoE (dispatch, 128 experts, combine), finishLayer. A 2-sequence warm-up runs first.
import { writeFileSync } from "node:fs";
import { buildSpec, DeviceEngine, expectedTensors, mapSource } from "@moeq/models";
import { type CudaPrecision, cudaKernels } from "@moeq/native";
import type { Tensor } from "@moeq/tensor";

const args = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1] : d;
};
const seqs = Number(opt("--seqs", "512"));
const T = Number(opt("--seq-len", "2048"));
const precisions = opt("--precision", "tf32").split(",") as CudaPrecision[];
const cu = cudaKernels(0);

const config = {
  model_type: "qwen3_moe",
  hidden_size: 2048,
  num_attention_heads: 32,
  num_key_value_heads: 4,
  head_dim: 128,
  num_hidden_layers: 1,
  moe_intermediate_size: 768,
  intermediate_size: 6144,
  num_experts: 128,
  num_experts_per_tok: 8,
  norm_topk_prob: true,
  vocab_size: 1024,
  rms_norm_eps: 1e-6,
  max_position_embeddings: 40960,
  rope_parameters: { rope_theta: 1000000, rope_type: "default" },
  tie_word_embeddings: false,
  hidden_act: "silu",
  decoder_sparse_step: 1,
  mlp_only_layers: [],
};
const { spec } = buildSpec(config, "engine-layer (synthetic)");

// random bf16 N(0, 0.02)-ish weights from one pool (norm weights 1)
let s = 7;
const pool = new Uint16Array(1 << 24);
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
for (let i = 0; i < pool.length; i++) {
  s = (s * 1664525 + 1013904223) >>> 0;
  const a = s / 2 ** 32;
  s = (s * 1664525 + 1013904223) >>> 0;
  const b = s / 2 ** 32;
  f32[0] = 0.02 * Math.sqrt(-2 * Math.log(a + 1e-12)) * Math.cos(2 * Math.PI * b);
  pool[i] = u32[0] >>> 16;
}
const tensors = new Map<string, Tensor>();
let off = 0;
for (const t of expectedTensors(spec)) {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const bits = new Uint16Array(n);
  if (t.role === "norm") bits.fill(0x3f80);
  else
    for (let i = 0; i < n; i += pool.length) {
      const m = Math.min(pool.length, n - i);
      off = (off + 4099) % (pool.length - m + 1);
      bits.set(pool.subarray(off, off + m), i);
    }
  tensors.set(t.name, { dtype: "BF16", shape: [...t.shape], data: new Uint8Array(bits.buffer) });
}
const source = mapSource(tensors);

async function layer(dev: DeviceEngine, B: number) {
  const seq = dev.sequences(B, T);
  const rows = B * T;
  const h = dev.alloc(rows, 2048);
  cu.cudaFillUniform(h.buf, rows * 2048, 11, -1, 1);
  cu.cudaSynchronize(0);
  const t: Record<string, number> = {};
  let t0 = performance.now();
  const { residual, x } = await dev.attention(0, h, seq);
  t.attention = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const r = await dev.router(0, x);
  t.router = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const y = await dev.moe(0, x, r);
  t.moe = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const out = dev.finishLayer(residual, y);
  cu.cudaSynchronize(0);
  t.finish = (performance.now() - t0) / 1000;
  t.total = t.attention + t.router + t.moe + t.finish;
  dev.freeRouting(r);
  dev.free(h, residual, x, y, out);
  return t;
}

const results: Record<string, unknown>[] = [];
for (const p of precisions) {
  const dev = new DeviceEngine(spec, source, { precision: p, weightCacheBytes: 16 * 2 ** 30 });
  await layer(dev, 2); // warm-up: uploads the layer's weights, cuBLAS heuristics
  cu.cudaResetPeak(0);
  const t = await layer(dev, seqs);
  const info = cu.cudaDeviceInfo(0);
  const row = { precision: p, seqs, seqLen: T, tokens: seqs * T, ...t, peakGiB: info.peakBytes / 2 ** 30 };
  results.push(row);
  console.log(
    `device engine ${p}: ${seqs}×${T} tokens, attention ${t.attention.toFixed(3)} s, router ${t.router.toFixed(3)} s, moe ${t.moe.toFixed(3)} s, finish ${t.finish.toFixed(3)} s, total ${t.total.toFixed(3)} s, peak ${(info.peakBytes / 2 ** 30).toFixed(1)} GiB (moeq allocations)`,
  );
  dev.dispose();
}
const out = opt("--out", "");
if (out) writeFileSync(out, JSON.stringify(results, null, 1));

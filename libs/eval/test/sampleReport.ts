// A report shaped like a run on tiny-qwen3moe-brown (4 layers × 32 experts, top-4), with
// numbers from a seeded generator and KLD statistics from real accumulation on random logits.
import { coverageOf, type ExpertStats, expertMatrix, KldAccumulator, type ReportData } from "../src/index.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function sampleReport(layers = 4, experts = 32): ReportData {
  const r = rng(42);
  const stats: ExpertStats[] = [];
  for (let l = 0; l < layers; l++)
    for (let e = 0; e < experts; e++) {
      const routed = (l + e) % 11 === 0 ? 0 : Math.floor(4000 * r() ** 3);
      stats.push({
        layer: l,
        expert: e,
        routedTokens: routed,
        calibWeightMass: routed === 0 ? 0.5 + r() : routed * (0.2 + 0.1 * r()),
        weightRelError: 0.08 + 0.02 * r(),
        outputRelError: routed === 0 ? null : 0.05 + 0.05 * r(),
        seconds: 0.02 + 0.05 * r(),
      });
    }
  const vocab = 64;
  const rows = 400;
  const ref = new Float32Array(rows * vocab);
  const q = new Float32Array(rows * vocab);
  const targets = new Int32Array(rows);
  for (let i = 0; i < ref.length; i++) {
    ref[i] = 4 * r();
    q[i] = ref[i] + (i % 9 === 0 ? 1.2 : 0.1) * (r() - 0.5);
  }
  for (let t = 0; t < rows; t++) targets[t] = Math.floor(r() * vocab);
  const acc = new KldAccumulator();
  acc.add(ref, q, vocab, targets);
  const routedTokens = expertMatrix(layers, experts, stats, "routedTokens");
  return {
    title: "moeq report — tiny-qwen3moe-brown W4 g32 GPTQ",
    createdAt: "2026-11-26T05:00:00Z",
    model: { name: "tiny-qwen3moe-brown", layers, experts, topK: 4, source: "models/tiny-qwen3moe-brown" },
    settings: {
      method: "gptq",
      bits: 4,
      group: 32,
      symmetric: true,
      calib: "brown:128x256",
      eval: "brown (held-out) 64x256",
      policy: 'soft <routing> & "weights"',
      seed: 0,
      note: null,
    },
    kld: acc.finish(),
    layers: Array.from({ length: layers }, (_, l) => ({ layer: l, outputRelError: 0.03 + 0.01 * l, tokens: 16384 })),
    experts: {
      routedTokens,
      calibWeightMass: expertMatrix(layers, experts, stats, "calibWeightMass"),
      weightRelError: expertMatrix(layers, experts, stats, "weightRelError"),
      outputRelError: expertMatrix(layers, experts, stats, "outputRelError"),
      seconds: expertMatrix(layers, experts, stats, "seconds"),
    },
    coverage: coverageOf(routedTokens, 64, "soft routing weights"),
    timings: [
      { stage: "calibrate", seconds: 12.5 },
      { stage: "quantize", seconds: 8.25 },
      { stage: "evaluate", seconds: 3.1 },
    ],
  };
}

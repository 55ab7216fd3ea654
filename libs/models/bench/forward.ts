// Benchmark (a command, not a test): node libs/models/bench/forward.ts [--model DIR] [--batch 16]
//   [--seq 256] [--runs 3] [--target 0.1]
// Forward throughput of the f32 engine on the trained model (default ../shared/models/
// tiny-qwen3moe-brown), batch 16×256, against what this machine's f32 GEMM rate would allow:
//   ideal tokens/s = measured sgemm FLOP/s ÷ model FLOPs per token
// (matmul FLOPs of attention projections, router, the top-k experts, shared experts, lm_head,
// plus causal attention scores). Reports tokens/s and the ratio; exits 1 below --target.
// Needs the built packages (npm run build).
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type ModelSpec } from "@moeq/models";
import { native } from "@moeq/native";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const here = dirname(fileURLToPath(import.meta.url));
const modelDir = arg("model", join(here, "..", "..", "..", "..", "shared", "models", "tiny-qwen3moe-brown"));
const B = Number(arg("batch", "16"));
const T = Number(arg("seq", "256"));
const RUNS = Number(arg("runs", "3"));
const TARGET = Number(arg("target", "0.1"));

/** Matmul FLOPs per token of one forward pass at sequence length T (2 per multiply-add). */
function flopsPerToken(spec: ModelSpec, seqLen: number): number {
  let f = 0;
  const lin = (o: number, i: number) => 2 * o * i;
  for (const L of spec.layers) {
    const a = L.attention;
    for (const l of [a.q, a.k, a.v, a.o]) f += lin(l.outFeatures, l.inFeatures);
    // causal: on average (T+1)/2 keys per query, for q·k and p·v
    const keys = (seqLen + 1) / 2;
    f += 2 * a.numHeads * keys * (a.headDim + a.vHeadDim);
    const m = L.mlp;
    if (m.kind === "dense") f += lin(m.gate.outFeatures, m.gate.inFeatures) * 3;
    else {
      f += lin(m.router.outFeatures, m.router.inFeatures);
      f += m.routing.topK * 3 * lin(m.experts.intermediate, m.experts.hidden);
      if (m.shared) f += 3 * lin(m.shared.mlp.gate.outFeatures, m.shared.mlp.gate.inFeatures);
    }
  }
  return f + lin(spec.lmHead.outFeatures, spec.lmHead.inFeatures);
}

/** Best sgemm rate over a few large products (what a perfect engine could reach). */
async function gemmRate(): Promise<number> {
  const n = 1024;
  const a = Float32Array.from({ length: n * n }, (_, i) => Math.sin(i));
  const b = Float32Array.from({ length: n * n }, (_, i) => Math.cos(i));
  const c = new Float32Array(n * n);
  await native.gemmF32(a, b, c, n, n, n, false, true);
  let best = 0;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    await native.gemmF32(a, b, c, n, n, n, false, true);
    best = Math.max(best, (2 * n ** 3) / ((performance.now() - t0) / 1000));
  }
  return best;
}

const model = loadModel(modelDir);
try {
  const engine = model.engine();
  const V = model.spec.vocabSize;
  let s = 12345;
  const ids = Array.from({ length: B * T }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s % V;
  });
  const rate = await gemmRate();
  await engine.forward(ids.slice(0, 2 * T), 2, T); // warm the f32 weight cache
  const times: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now();
    await engine.forward(ids, B, T);
    times.push((performance.now() - t0) / 1000);
  }
  const best = Math.min(...times);
  const tokPerS = (B * T) / best;
  const fpt = flopsPerToken(model.spec, T);
  const ideal = rate / fpt;
  const ratio = tokPerS / ideal;
  console.log(`model          ${modelDir} (${model.spec.modelType})`);
  console.log(
    `batch          ${B}×${T} = ${B * T} tokens, ${RUNS} runs: ${times.map((t) => `${t.toFixed(2)} s`).join(", ")}`,
  );
  console.log(`BLAS threads   ${native.blasThreads()}`);
  console.log(`sgemm rate     ${(rate / 1e9).toFixed(1)} GFLOP/s (1024³, best of 5)`);
  console.log(`model FLOPs    ${(fpt / 1e6).toFixed(2)} MFLOP/token`);
  console.log(`throughput     ${tokPerS.toFixed(0)} tokens/s (ideal at the sgemm rate: ${ideal.toFixed(0)} tokens/s)`);
  console.log(`ratio          ${ratio.toFixed(3)} (target ≥ ${TARGET})`);
  if (!(ratio >= TARGET)) {
    console.error(`forward throughput is ${ratio.toFixed(3)} of the sgemm bound, below the target ${TARGET}`);
    process.exitCode = 1;
  }
} finally {
  model.close();
}

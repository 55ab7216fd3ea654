// Benchmark (a command, not a test): node libs/models/bench/forward.ts [--model DIR] [--batch 16]
//   [--seq 256] [--runs 3] [--target 0.5]
// Forward throughput of the f32 engine on the trained model (default ../shared/models/
// tiny-qwen3moe-brown), batch 16×256, against two references measured in the same run:
// - the peer: the forward's own matrix products on the same shapes, each one a plain sgemm
//   (gemmF32: attention projections, router, every expert's gate/up/down on its share of the
//   tokens under balanced routing, shared experts, lm_head, and per (sequence, head) Q·Kᵀ and P·V
//   over the causal half of the scores), timed alternately with the engine's forward. The engine
//   does this work plus norms, RoPE, softmax and routing, so engine time ≥ peer time is the
//   physical floor; the gate is peer time / engine time ≥ --target (default 0.5: the work
//   around the GEMMs costs at most as much as the GEMMs).
// - the bound: sgemm's best rate on 1024³ (what a perfect engine could reach) ÷ model FLOPs per
//   token, reported as before (ideal tokens/s and the ratio), not gated.
// And the attention kernel (attentionF32, causal) against sgemm doing Q·Kᵀ and P·V on the same
// (sequence, head) shapes, each in GFLOP/s of the causal work.
// Exits 1 when the engine is below the target of its peer. Needs the built packages (npm run build).
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
const TARGET = Number(arg("target", "0.5"));

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

type Shape = [m: number, n: number, k: number];

/** The forward's matrix products for N = B·T tokens, as [m, n, k] (C[m,n] = A[m,k]·B[k,n]). */
function forwardGemms(spec: ModelSpec, batch: number, seqLen: number): { dense: Shape[]; attention: Shape[] } {
  const N = batch * seqLen;
  const dense: Shape[] = [];
  const attention: Shape[] = [];
  const lin = (l: { outFeatures: number; inFeatures: number }, rows = N) => {
    if (rows > 0) dense.push([rows, l.outFeatures, l.inFeatures]);
  };
  for (const L of spec.layers) {
    const a = L.attention;
    for (const l of [a.q, a.k, a.v, a.o]) lin(l);
    // the causal half of the scores: per (sequence, head) a [T, T] product counted at half size
    for (let b = 0; b < batch * a.numHeads; b++) {
      attention.push([seqLen, Math.ceil(seqLen / 2), a.headDim], [seqLen, a.vHeadDim, Math.ceil(seqLen / 2)]);
    }
    const m = L.mlp;
    if (m.kind === "dense") for (const l of [m.gate, m.up, m.down]) lin(l);
    else {
      lin(m.router);
      // balanced routing: every expert gets N·topK/E rows
      const rows = Math.round((N * m.routing.topK) / m.experts.numExperts);
      for (let e = 0; e < m.experts.numExperts; e++) {
        dense.push([rows, m.experts.intermediate, m.experts.hidden], [rows, m.experts.intermediate, m.experts.hidden]);
        dense.push([rows, m.experts.hidden, m.experts.intermediate]);
      }
      if (m.shared) for (const l of [m.shared.mlp.gate, m.shared.mlp.up, m.shared.mlp.down]) lin(l);
    }
  }
  lin(spec.lmHead);
  return { dense, attention };
}

const flopsOf = (shapes: readonly Shape[]) => shapes.reduce((f, [m, n, k]) => f + 2 * m * n * k, 0);

/** Runs every product once with sgemm on operands of the right sizes; seconds. */
async function runGemms(shapes: readonly Shape[]): Promise<number> {
  const size = (n: number) => new Float32Array(n).fill(0.01);
  const bufs = new Map<string, [Float32Array, Float32Array, Float32Array]>();
  for (const [m, n, k] of shapes) {
    const key = `${m}x${n}x${k}`;
    if (!bufs.has(key)) bufs.set(key, [size(m * k), size(k * n), size(m * n)]);
  }
  const t0 = performance.now();
  for (const [m, n, k] of shapes) {
    const [a, b, c] = bufs.get(`${m}x${n}x${k}`)!;
    native.gemmF32Sync(a, b, c, m, n, k, false, false);
  }
  return (performance.now() - t0) / 1000;
}

const model = loadModel(modelDir);
try {
  const engine = model.engine();
  const spec = model.spec;
  const V = spec.vocabSize;
  let s = 12345;
  const ids = Array.from({ length: B * T }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s % V;
  });
  const rate = await gemmRate();
  const gemms = forwardGemms(spec, B, T);
  const peerShapes = [...gemms.dense, ...gemms.attention];
  await engine.forward(ids.slice(0, 2 * T), 2, T); // warm the f32 weight cache
  await runGemms(peerShapes);
  // engine and peer alternately, so both see the same load on a shared machine
  const times: number[] = [];
  const peer: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    if (r % 2 === 1) peer.push(await runGemms(peerShapes));
    const t0 = performance.now();
    await engine.forward(ids, B, T);
    times.push((performance.now() - t0) / 1000);
    if (r % 2 === 0) peer.push(await runGemms(peerShapes));
  }
  const best = Math.min(...times);
  const bestPeer = Math.min(...peer);
  const tokPerS = (B * T) / best;
  const fpt = flopsPerToken(spec, T);
  const ideal = rate / fpt;
  const vsPeer = bestPeer / best;

  // the attention kernel against sgemm on the same (sequence, head) shapes, one layer
  const a0 = spec.layers[0].attention;
  const H = a0.numHeads;
  const kvH = a0.numKvHeads;
  const q = new Float32Array(B * T * H * a0.headDim).map((_, i) => Math.sin(i) * 0.1);
  const k = new Float32Array(B * T * kvH * a0.headDim).map((_, i) => Math.cos(i) * 0.1);
  const v = new Float32Array(B * T * kvH * a0.vHeadDim).map((_, i) => Math.sin(i * 0.7) * 0.1);
  const out = new Float32Array(B * T * H * a0.vHeadDim);
  const opts = { batch: B, seqLen: T, numHeads: H, numKvHeads: kvH, headDim: a0.headDim, vHeadDim: a0.vHeadDim };
  const causalFlops = B * H * 2 * ((T * (T + 1)) / 2) * (a0.headDim + a0.vHeadDim);
  const attnShapes = gemms.attention.slice(0, 2 * B * H);
  await native.attentionF32(q, k, v, out, opts);
  const attnT: number[] = [];
  const attnGemmT: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    await native.attentionF32(q, k, v, out, opts);
    attnT.push((performance.now() - t0) / 1000);
    attnGemmT.push(await runGemms(attnShapes));
  }
  const attnRate = causalFlops / Math.min(...attnT);
  const attnGemmRate = flopsOf(attnShapes) / Math.min(...attnGemmT);

  console.log(`model          ${modelDir} (${spec.modelType})`);
  console.log(
    `batch          ${B}×${T} = ${B * T} tokens, ${RUNS} runs: ${times.map((t) => `${t.toFixed(2)} s`).join(", ")}`,
  );
  console.log(`BLAS threads   ${native.blasThreads()}, kernel pool ${native.kernelPoolThreads()}`);
  console.log(`sgemm rate     ${(rate / 1e9).toFixed(1)} GFLOP/s (1024³, best of 5)`);
  console.log(`model FLOPs    ${(fpt / 1e6).toFixed(2)} MFLOP/token`);
  console.log(
    `throughput     ${tokPerS.toFixed(0)} tokens/s (ideal at the 1024³ sgemm rate: ${ideal.toFixed(0)} tokens/s, ratio ${(tokPerS / ideal).toFixed(3)})`,
  );
  console.log(
    `peer           the same ${peerShapes.length} products by sgemm: ${peer.map((t) => `${t.toFixed(2)} s`).join(", ")} (${(flopsOf(peerShapes) / bestPeer / 1e9).toFixed(1)} GFLOP/s)`,
  );
  console.log(
    `attention      kernel ${(attnRate / 1e9).toFixed(2)} GFLOP/s vs sgemm ${(attnGemmRate / 1e9).toFixed(2)} GFLOP/s on the same ${B}×${H} (sequence, head) Q·Kᵀ, P·V shapes (causal work, ${(attnRate / attnGemmRate).toFixed(2)}×)`,
  );
  console.log(`vs peer        ${vsPeer.toFixed(3)} (peer time / engine time; target ≥ ${TARGET})`);
  if (!(vsPeer >= TARGET)) {
    console.error(
      `forward takes ${(1 / vsPeer).toFixed(2)}× the time of its own GEMMs by sgemm, above the target ${(1 / TARGET).toFixed(2)}×`,
    );
    process.exitCode = 1;
  }
} finally {
  model.close();
}

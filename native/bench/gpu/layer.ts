// GPU benchmark: moeq's per-layer calibration + GPTQ of a Qwen3-30B-A3B-shaped MoE layer (128
// experts, hidden 2048, expert dim 768, 64K calibration tokens, soft weighting: every token
// weighted by its router probability for every expert), against perf_anchor.py (PyTorch,
// expert by expert, Python column loop) measured on the same card in the same call.
//   node native/bench/gpu/layer.ts --anchor anchor.json [--out result.json] [--tokens 65536]
//        [--experts 128] [--hidden 2048] [--inter 768] [--precision tf32] [--min-ratio 20]
// Exit 1 when moeq is less than --min-ratio times faster than the anchor's per-layer estimate.
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { cudaKernels, native } from "../../ts/index.ts";
import type { CudaBuffer, CudaPrecision } from "../../ts/kernels/cuda.ts";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ""), process.argv[i + 1]);
const num = (k: string, d: number) => Number(args.get(k) ?? d);
const N = num("tokens", 65536);
const E = num("experts", 128);
const H = num("hidden", 2048);
const I = num("inter", 768);
const precision = (args.get("precision") ?? "tf32") as CudaPrecision;
const minRatio = num("min-ratio", 20);
const cu = cudaKernels(0);
const info = cu.cudaDeviceInfo(0);

function fill(bytes: number, seed: number, half: number): CudaBuffer {
  const b = cu.cudaAlloc(bytes);
  cu.cudaFillUniform(b, bytes / 4, seed, -half, half);
  return b;
}

interface LayerRun {
  seconds: number;
  calibrate: Record<string, number>;
  gptqGateUp: Record<string, number>;
  gptqDown: Record<string, number>;
  lossGateUp: number;
  lossDown: number;
  peakBytes: number;
}

// One layer: calibration (router, Hessians) then GPTQ of gate_up [E, 2I, H] and down [E, H, I].
async function layer(
  n: number,
  e: number,
  prec: CudaPrecision,
  timePhases: boolean,
): Promise<LayerRun & { hDown: CudaBuffer; dn: CudaBuffer }> {
  const x = fill(n * H * 4, 1, 1); // uniform ±1: std 0.58, the anchor's 0.5·randn in scale
  const g = fill(e * H * 4, 2, 0.0346); // ±0.0346: std 0.02 as the anchor's 0.02·randn
  const gu = fill(e * 2 * I * H * 4, 3, 0.0346);
  const dn = fill(e * H * I * 4, 4, 0.0346);
  cu.cudaSynchronize(0);
  cu.cudaResetPeak(0);
  const t0 = performance.now();
  const cal = await cu.cudaMoeCalibrate(x, n, H, g, gu, e, I, prec, timePhases);
  const q1 = await cu.cudaGptqBatched(gu, cal.hIn, e, 2 * I, H, 4, 128, false, false, 0.01, 128);
  const q2 = await cu.cudaGptqBatched(dn, cal.hDown, e, H, I, 4, 128, false, false, 0.01, 128);
  cu.cudaSynchronize(0);
  const seconds = (performance.now() - t0) / 1000;
  const peakBytes = cu.cudaDeviceInfo(0).peakBytes;
  const sum = (a: Float64Array) => a.reduce((s, v) => s + v, 0);
  for (const b of [
    x,
    g,
    gu,
    cal.probs,
    cal.hIn,
    q1.codes,
    q1.scales,
    q1.zeros,
    q1.dequant,
    q2.codes,
    q2.scales,
    q2.zeros,
    q2.dequant,
  ])
    cu.cudaFree(b);
  return {
    seconds,
    calibrate: cal.seconds,
    gptqGateUp: q1.seconds,
    gptqDown: q2.seconds,
    lossGateUp: sum(q1.loss),
    lossDown: sum(q2.loss),
    peakBytes,
    hDown: cal.hDown,
    dn,
  };
}

// Warm-up at a small size: module load, cuBLAS/cuSOLVER handles and workspaces stay out of the numbers.
{
  const w = await layer(4096, 4, precision, false);
  cu.cudaFree(w.hDown);
  cu.cudaFree(w.dn);
}
const runs: LayerRun[] = [];
let spot = "";
for (let rep = 0; rep < 2; rep++) {
  const r = await layer(N, E, precision, false);
  if (rep === 0) {
    // spot check of the big run: expert 0's down projection against the CPU GPTQ on the same Hessian
    const h = new Float32Array(I * I);
    const w = new Float32Array(H * I);
    cu.cudaDownload(r.hDown, h);
    cu.cudaDownload(r.dn, w);
    const cpu = await native.gptqQuantize(w, H, I, h, 4, 128, false, false, 0.01, 128);
    const one = await cu.cudaGptqBatched(
      cu.cudaView(r.dn, 0, H * I * 4),
      cu.cudaView(r.hDown, 0, I * I * 4),
      1,
      H,
      I,
      4,
      128,
      false,
      false,
      0.01,
      128,
    );
    const codes = new Uint8Array(H * I);
    cu.cudaDownload(one.codes, codes);
    let same = 0;
    for (let i = 0; i < codes.length; i++) if (codes[i] === cpu.codes[i]) same++;
    spot = `expert 0 down_proj vs CPU gptqQuantize: codes ${same}/${codes.length} identical, loss ${one.loss[0].toPrecision(6)} vs ${cpu.loss.toPrecision(6)}`;
    for (const b of [one.codes, one.scales, one.zeros, one.dequant]) cu.cudaFree(b);
    if (same / codes.length < 0.999 || Math.abs(one.loss[0] / cpu.loss - 1) > 1e-3) {
      console.error(`spot check failed: ${spot}`);
      process.exitCode = 1;
    }
  }
  cu.cudaFree(r.hDown);
  cu.cudaFree(r.dn);
  const { hDown: _h, dn: _d, ...rest } = r;
  runs.push(rest);
}
const phased = await layer(N, E, precision, true);
cu.cudaFree(phased.hDown);
cu.cudaFree(phased.dn);

const best = Math.min(...runs.map((r) => r.seconds));
const flops = E * (2 * N * H * H + 2 * N * H * 2 * I + 2 * N * I * I);
const anchor = args.get("anchor")
  ? (JSON.parse(readFileSync(args.get("anchor") as string, "utf8")) as Record<string, number>)
  : null;
const floorBf16 = anchor ? flops / (anchor.bf16_tflops * 1e12) : Number.NaN;
const floorTf32 = anchor ? flops / (anchor.tf32_tflops * 1e12) : Number.NaN;
const ratio = anchor ? anchor.layer_s_est / best : Number.NaN;
const result = {
  gpu: info.name,
  tokens: N,
  experts: E,
  hidden: H,
  inter: I,
  precision,
  moeq_layer_s: runs.map((r) => r.seconds),
  moeq_best_s: best,
  phases_serialised: {
    calibrate: phased.calibrate,
    gptqGateUp: phased.gptqGateUp,
    gptqDown: phased.gptqDown,
    total_s: phased.seconds,
  },
  peak_gpu_bytes: Math.max(...runs.map((r) => r.peakBytes)),
  calibration_flops: flops,
  floor_s_bf16: floorBf16,
  floor_s_tf32: floorTf32,
  anchor_layer_s: anchor?.layer_s_est,
  anchor_gpu: anchor?.gpu,
  ratio,
  spot_check: spot,
  losses: { gateUp: runs[0].lossGateUp, down: runs[0].lossDown },
};
const outPath = args.get("out");
if (outPath) {
  writeFileSync(`${outPath}.tmp`, JSON.stringify(result, null, 1));
  renameSync(`${outPath}.tmp`, outPath);
}
console.log(JSON.stringify(result, null, 1));
console.log("| what | value |\n| --- | --- |");
console.log(`| GPU | ${info.name} |`);
console.log(
  `| moeq layer (calibration + GPTQ, ${precision}) | ${best.toFixed(3)} s (runs: ${runs.map((r) => r.seconds.toFixed(3)).join(", ")}) |`,
);
console.log(`| PyTorch per-expert reference (perf_anchor.py) | ${anchor ? anchor.layer_s_est.toFixed(2) : "n/a"} s |`);
console.log(`| ratio | ${ratio.toFixed(1)}× (target ≥ ${minRatio}×) |`);
console.log(
  `| FLOP floor (calibration GEMMs at measured bf16 / tf32 peak) | ${floorBf16.toFixed(3)} / ${floorTf32.toFixed(3)} s → moeq at ${(best / floorBf16).toFixed(1)}× / ${(best / floorTf32).toFixed(1)}× |`,
);
console.log(`| peak moeq GPU memory | ${(result.peak_gpu_bytes / 2 ** 30).toFixed(2)} GiB |`);
if (anchor && !(ratio >= minRatio)) {
  console.error(`FAIL: ${ratio.toFixed(1)}× < ${minRatio}×`);
  process.exitCode = 1;
}

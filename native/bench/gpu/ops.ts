// GPU benchmark of the forward-pass kernels (ops.cu) at model sizes, each against the CPU kernel
// a stage would otherwise call (same inputs, same process, this machine's cores), with the
// GPU-vs-CPU agreement at that size:
//   node native/bench/gpu/ops.ts [--out ops.json] [--min-ratio 5] [--reps 5]
// GPU times are device-resident (no transfers), median of --reps synchronised calls; CPU times
// are the best of two runs. Exit 1 when a kernel's speed-up is under --min-ratio or an output
// disagrees with the CPU kernel beyond its checks tolerance (docs/gpu.md).
import { renameSync, writeFileSync } from "node:fs";
import { relErr } from "../../test/cuda_checks.ts";
import { cudaKernels, native } from "../../ts/index.ts";
import type { CudaBuffer } from "../../ts/kernels/cuda.ts";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ""), process.argv[i + 1]);
const minRatio = Number(args.get("min-ratio") ?? 5);
const reps = Number(args.get("reps") ?? 5);
const cu = cudaKernels(0);
let seed = 100;

/** f32 uniform in ±half made on the device, and its host copy for the CPU kernel. */
function data(n: number, half = 1, offset = 0): { d: CudaBuffer; h: Float32Array } {
  const d = cu.cudaAlloc(n * 4);
  cu.cudaFillUniform(d, n, seed++, offset - half, offset + half);
  const h = new Float32Array(n);
  cu.cudaDownload(d, h);
  return { d, h };
}
function upload(h: ArrayBufferView): CudaBuffer {
  const d = cu.cudaAlloc(h.byteLength);
  cu.cudaUpload(d, h);
  return d;
}
function download(d: CudaBuffer): Float32Array {
  const h = new Float32Array(d.bytes / 4);
  cu.cudaDownload(d, h);
  return h;
}

async function timeIt(f: () => unknown, n: number): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f();
    t.push((performance.now() - t0) / 1000);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

interface Row {
  kernel: string;
  shape: string;
  gpu: number;
  cpu: number;
  ratio: number;
  err: number;
  tol: number;
  ok: boolean;
}
const rows: Row[] = [];

/**
 * gpu() leaves its result where out() reads it; cpu(want) writes the CPU kernel's result into a
 * buffer of `n` values allocated outside the timing (cpuPrep, untimed, runs before each cpu()).
 */
async function bench(
  kernel: string,
  shape: string,
  gpu: () => unknown,
  out: () => Float32Array,
  cpu: (want: Float32Array) => unknown,
  n: number,
  tol: number,
  cpuPrep: (want: Float32Array) => void = () => {},
): Promise<void> {
  const want = new Float32Array(n);
  await gpu(); // warm-up (module load, first launch)
  const g = await timeIt(gpu, reps);
  const got = out();
  let c = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 2; i++) {
    cpuPrep(want);
    c = Math.min(c, await timeIt(() => cpu(want), 1));
  }
  const err = relErr(got, want);
  const ratio = c / g;
  const r = { kernel, shape, gpu: g, cpu: c, ratio, err, tol, ok: err < tol && ratio >= minRatio };
  rows.push(r);
  console.log(
    `${r.ok ? "PASS" : "FAIL"} ${kernel} ${shape}: GPU ${(g * 1e3).toFixed(3)} ms, CPU ${(c * 1e3).toFixed(1)} ms, ×${ratio.toFixed(0)}, rel err ${err.toExponential(1)}`,
  );
}

const info = cu.cudaDeviceInfo(0);
console.log(`${info.name}, ${navigator.hardwareConcurrency} CPU threads`);

{
  const [r, c] = [256, 151936]; // log-probabilities over a Qwen3 vocabulary
  const x = data(r * c, 8);
  const o = cu.cudaAlloc(r * c * 4);
  await bench(
    "logSoftmax",
    `${r}x${c}`,
    () => cu.cudaLogSoftmaxF32(x.d, o, r, c),
    () => download(o),
    (y) => native.logSoftmaxF32(x.h, y, r, c),
    r * c,
    1e-5, // the CPU kernel's own f32 sum over 151936 values is the larger error
  );
}
{
  const n = 4096 * 6144;
  const x = data(n, 6);
  const o = cu.cudaAlloc(n * 4);
  for (const kind of ["silu", "gelu_tanh"] as const)
    await bench(
      `activation ${kind}`,
      `${n}`,
      () => cu.cudaActivationF32(kind, x.d, o),
      () => download(o),
      (y) => native.activationF32(kind, x.h, y),
      n,
      1e-6,
    );
}
{
  const [r, inter] = [4096, 2880]; // GPT-OSS expert, interleaved gate/up
  const gu = data(r * 2 * inter, 10);
  const up = cu.cudaView(gu.d, 4, gu.d.bytes - 4);
  const o = cu.cudaAlloc(r * inter * 4);
  await bench(
    "clampedSwiglu",
    `${r}x${inter} interleaved`,
    () => cu.cudaClampedSwigluF32(gu.d, up, o, r, inter, 2 * inter, 2, 1.702, 7),
    () => download(o),
    (y) => native.clampedSwigluF32(gu.h, gu.h.subarray(1), y, r, inter, 2 * inter, 2, 1.702, 7),
    r * inter,
    1e-6,
  );
}
{
  const [r, c] = [4096, 4096];
  const x = data(r * c, 2, 1);
  const w = data(c, 1);
  const b = data(c, 1);
  const o = cu.cudaAlloc(r * c * 4);
  await bench(
    "layerNorm w b",
    `${r}x${c}`,
    () => cu.cudaLayerNormF32(x.d, w.d, b.d, o, r, c, 1e-5),
    () => download(o),
    (y) => native.layerNormF32(x.h, w.h, b.h, y, r, c, 1e-5),
    r * c,
    1e-5,
  );
  await bench(
    "l2Norm",
    `${r * 32}x128`,
    () => cu.cudaL2NormF32(x.d, o, r * 32, 128, 1e-6),
    () => download(o),
    (y) => native.l2NormF32(x.h, y, r * 32, 128, 1e-6),
    r * c,
    1e-6,
  );
}
{
  const [r, heads, hd, maxPos] = [4096, 32, 128, 4096];
  const half = hd / 2;
  const cos = new Float32Array(maxPos * half);
  const sin = new Float32Array(maxPos * half);
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < half; i++) {
      cos[p * half + i] = Math.cos(p * 1e6 ** (-i / half));
      sin[p * half + i] = Math.sin(p * 1e6 ** (-i / half));
    }
  const pos = Int32Array.from({ length: r }, (_, i) => i);
  const x = data(r * heads * hd, 1);
  const [dc, ds, dp] = [upload(cos), upload(sin), upload(pos)];
  // in place: every timed GPU call rotates again, so the comparison runs once on fresh copies
  const work = cu.cudaAlloc(x.d.bytes);
  await bench(
    "rope",
    `${r}x${heads}x${hd}`,
    () => cu.cudaRopeF32(work, dc, ds, dp, r, heads, hd, hd),
    () => {
      cu.cudaUpload(work, x.h);
      cu.cudaRopeF32(work, dc, ds, dp, r, heads, hd, hd);
      return download(work);
    },
    (y) => native.ropeF32(y, cos, sin, pos, r, heads, hd, hd),
    x.h.length,
    1e-12, // bit-exact in the checks; ‖Δ‖ must be 0 here too
    (y) => y.set(x.h),
  );
}
{
  const n = 64 * 2048 * 768; // 64 experts' down_proj in bf16
  const src = new Uint16Array(n);
  const f = data(n >> 1, 1); // random bits: two bf16 values per f32 draw
  src.set(new Uint16Array(f.h.buffer));
  for (let i = 0; i < n; i++) if ((src[i] & 0x7f80) === 0x7f80) src[i] ^= 0x0100; // no inf / NaN
  const ds = upload(src);
  const o = cu.cudaAlloc(n * 4);
  await bench(
    "bf16ToF32",
    `${n}`,
    () => cu.cudaBf16ToF32(ds, o),
    () => download(o),
    (y) => native.bf16ToF32(src, y),
    n,
    1e-12,
  );
}
{
  const [m, n, k] = [4096, 1536, 2048]; // tokens × an expert's gate_up (bf16 weight)
  const x = data(m * k, 1);
  const w = new Uint16Array(n * k);
  const wf = data(n * k, 0.05);
  const wb = new Uint32Array(wf.h.buffer);
  for (let i = 0; i < n * k; i++) w[i] = wb[i] >>> 16;
  const dw = upload(w);
  const y = cu.cudaAlloc(m * n * 4);
  await bench(
    "gemmMixed bf16 f32",
    `${m}x${n}x${k}`,
    () => cu.cudaGemmMixed(x.d, dw, y, m, n, k, "bf16"),
    () => download(y),
    (out) => native.gemmMixed(x.h, w, out, m, n, k, "bf16"),
    m * n,
    1e-5,
  );
}
{
  const [b, t, c, kk] = [1, 4096, 8192, 4]; // Qwen3-Next conv over q|k|v channels
  const x = data(b * t * c, 2);
  const w = data(c * kk, 0.5);
  const o = cu.cudaAlloc(b * t * c * 4);
  await bench(
    "causalConv1dSilu",
    `${b}x${t}x${c} K=${kk}`,
    () => cu.cudaCausalConv1dSiluF32(x.d, w.d, o, b, t, c, kk),
    () => download(o),
    (y) => native.causalConv1dSiluF32(x.h, w.h, y, b, t, c, kk),
    b * t * c,
    1e-6,
  );
}
{
  const [b, t, h, dk, dv] = [1, 4096, 32, 128, 128]; // Qwen3-Next linear attention, one layer's prefill
  const rowsN = b * t * h;
  const q = data(rowsN * dk, 1);
  const k = data(rowsN * dk, 1);
  native.l2NormF32(q.h, q.h, rowsN, dk, 1e-6);
  native.l2NormF32(k.h, k.h, rowsN, dk, 1e-6);
  for (let i = 0; i < q.h.length; i++) q.h[i] /= Math.sqrt(dk);
  cu.cudaUpload(q.d, q.h);
  cu.cudaUpload(k.d, k.h);
  const v = data(rowsN * dv, 1);
  const g = data(rowsN, 0.25, -0.4);
  const beta = data(rowsN, 0.4, 0.5);
  const o = cu.cudaAlloc(rowsN * dv * 4);
  await bench(
    "gatedDeltaRule (GPU recurrence vs CPU chunked)",
    `${b}x${t}x${h} dk=${dk} dv=${dv}`,
    () => cu.cudaGatedDeltaRuleRecurrentF32(q.d, k.d, v.d, g.d, beta.d, o, b, t, h, dk, dv),
    () => download(o),
    (out) => native.gatedDeltaRuleF32(q.h, k.h, v.h, g.h, beta.h, out, b, t, h, dk, dv),
    rowsN * dv,
    1e-4,
  );
}

if (args.get("out")) {
  const p = args.get("out") as string;
  writeFileSync(`${p}.tmp`, JSON.stringify({ device: info.name, minRatio, rows }, null, 1));
  renameSync(`${p}.tmp`, p);
}
console.log(`\n${"kernel".padEnd(48)} ${"GPU ms".padStart(8)} ${"CPU ms".padStart(9)} ${"ratio".padStart(6)} rel err`);
for (const r of rows)
  console.log(
    `${r.kernel.padEnd(48)} ${(r.gpu * 1e3).toFixed(3).padStart(8)} ${(r.cpu * 1e3).toFixed(1).padStart(9)} ${r.ratio.toFixed(0).padStart(6)} ${r.err.toExponential(1)}${r.ok ? "" : "  FAIL"}`,
  );
const failed = rows.filter((r) => !r.ok).length;
console.log(`ops bench: ${rows.length - failed} passed, ${failed} failed (min ratio ${minRatio})`);
process.exit(failed ? 1 : 0);

// Benchmark (a command, not a test): node libs/models/bench/deltanet.ts [--seq 512] [--heads 8]
//   [--dk 128] [--dv 128] [--target 10]
// The native chunked gated delta rule (what the engine runs for Qwen3-Next / Qwen3.5 linear
// attention) against the TypeScript chunked form measured in the same run, at Qwen3-Next's head
// dims. Checks they agree, reports both times and the speed-up; exits 1 below --target.
// Needs the built packages (npm run build).
import { type DeltaRuleInputs, gatedDeltaRuleChunked } from "@moeq/models";
import { native } from "@moeq/native";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return Number(i >= 0 ? process.argv[i + 1] : dflt);
};
const [T, H, dk, dv, TARGET] = [
  arg("seq", "512"),
  arg("heads", "8"),
  arg("dk", "128"),
  arg("dv", "128"),
  arg("target", "10"),
];

let s = 12345;
const r = () => {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  return s / 2 ** 32 - 0.5;
};
const unit = (n: number, d: number) => {
  const x = Float32Array.from({ length: n * d }, r);
  for (let i = 0; i < x.length; i += d) {
    let m = 0;
    for (let j = 0; j < d; j++) m += x[i + j] ** 2;
    for (let j = 0; j < d; j++) x[i + j] /= Math.sqrt(m);
  }
  return x;
};
const x: DeltaRuleInputs = {
  seqLen: T,
  numHeads: H,
  kDim: dk,
  vDim: dv,
  q: unit(T * H, dk).map((v) => v * dk ** -0.5),
  k: unit(T * H, dk),
  v: Float32Array.from({ length: T * H * dv }, r),
  g: Float32Array.from({ length: T * H }, () => -0.05 - 0.5 * (r() + 0.5)),
  beta: Float32Array.from({ length: T * H }, () => r() + 0.5),
};

const time = async (f: () => unknown | Promise<unknown>, runs: number) => {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await f();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
};

const out = new Float32Array(T * H * dv);
let ts = new Float32Array(0);
const tsMs = await time(() => {
  ts = gatedDeltaRuleChunked(x, 64);
}, 2);
const nativeMs = await time(() => native.gatedDeltaRuleF32(x.q, x.k, x.v, x.g, x.beta, out, 1, T, H, dk, dv, 64), 5);
let err = 0;
let scale = 0;
for (let i = 0; i < out.length; i++) {
  err = Math.max(err, Math.abs(out[i] - ts[i]));
  scale = Math.max(scale, Math.abs(ts[i]));
}
const ratio = tsMs / nativeMs;
console.log(
  `gated delta rule T=${T} heads=${H} dk=${dk} dv=${dv}: TypeScript ${tsMs.toFixed(1)} ms, native ${nativeMs.toFixed(1)} ms, speed-up ${ratio.toFixed(1)}× (target ${TARGET}×), max rel diff ${(err / scale).toExponential(2)}`,
);
if (!(err / scale < 1e-4)) {
  console.error("native and TypeScript forms disagree");
  process.exit(1);
}
if (ratio < TARGET) process.exit(1);

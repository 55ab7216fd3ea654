// Compares the quantizer's outputs of two runs of the same model (e.g. --device cpu and --device
// cuda): every tensors/quant/*.codes file of run A against the same file of run B, byte for byte
// (one u8 code per weight), and the mean KLD of their summaries.
//   node native/bench/gpu/compare-codes.mjs <outA> <outB> [--min 0.99] [--kld-rel 0.02]
// <outX> is the --out of `moeq quantize` (outputs under <outX>.moeq-work, summary JSON at
// <outX>.json when the caller saved --json there). Exit 1 below --min identical codes overall,
// when a file is missing on one side, or when the mean KLDs differ by more than --kld-rel.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const [a, b] = process.argv.slice(2, 4);
const opt = (k, d) => {
  const i = process.argv.indexOf(k);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const min = opt("--min", 0.99);
const kldRel = opt("--kld-rel", 0.02);
const quantDir = (o) => join(`${o}.moeq-work`, "tensors", "quant");
const codes = (o) =>
  readdirSync(quantDir(o))
    .filter((f) => /\.codes(\.|$)/.test(f))
    .sort();
const fa = codes(a);
const fb = new Set(codes(b));
let same = 0;
let total = 0;
let worst = { file: "", frac: 1 };
const missing = fa.filter((f) => !fb.has(f));
for (const f of fa.filter((f) => fb.has(f))) {
  const x = readFileSync(join(quantDir(a), f));
  const y = readFileSync(join(quantDir(b), f));
  if (x.length !== y.length) {
    missing.push(`${f} (sizes ${x.length} / ${y.length})`);
    continue;
  }
  let s = 0;
  for (let i = 0; i < x.length; i++) if (x[i] === y[i]) s++;
  same += s;
  total += x.length;
  if (s / x.length < worst.frac) worst = { file: f, frac: s / x.length };
}
const kld = (o) => {
  const p = `${o}.json`;
  if (!existsSync(p)) return Number.NaN;
  try {
    return JSON.parse(readFileSync(p, "utf8")).kld?.kld?.mean ?? Number.NaN;
  } catch {
    return Number.NaN;
  }
};
const [ka, kb] = [kld(a), kld(b)];
const rel = Math.abs(ka - kb) / Math.max(Math.abs(ka), 1e-30);
const frac = total ? same / total : 0;
console.log(
  `${a} vs ${b}: ${fa.length} codes files, identical codes ${(100 * frac).toFixed(3)} % (${same}/${total}), worst ${worst.file} ${(100 * worst.frac).toFixed(2)} %; mean KLD ${ka.toPrecision(4)} vs ${kb.toPrecision(4)} (rel Δ ${rel.toExponential(1)})${missing.length ? `; MISSING ${missing.slice(0, 5).join(", ")}` : ""}`,
);
process.exit(frac >= min && missing.length === 0 && fa.length > 0 && !(rel > kldRel) ? 0 : 1);

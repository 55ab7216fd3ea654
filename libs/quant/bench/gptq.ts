// GPTQ benchmark: our gptq() (native f64 kernel) on a 2048×768 weight against the Python oracle
// (../shared/device/oracles/gptq_ref.py on Debian's python3-torch, float64 as written, and a
// float32 variant through ./gptq_oracle_bench.py). Prints times and ratios (oracle / ours) and
// exits 1 when ours is not ≥ 2× faster than the float64 oracle. Setup: when `import torch` fails,
// installs python3-torch with apt-get (root only) and says so.
//   node libs/quant/bench/gptq.ts [--reps N]
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { native } from "@moeq/native";
import { gptq } from "../src/index.ts";

const here = dirname(fileURLToPath(import.meta.url));
const oracle = join(here, "..", "..", "..", "..", "shared", "device", "oracles", "gptq_ref.py");
const repsArg = process.argv.indexOf("--reps");
const reps = repsArg > 0 ? Number(process.argv[repsArg + 1]) : 3;
const [rows, cols, tokens] = [2048, 768, 4 * 768];
const settings = { bits: 4, groupSize: 128, symmetric: true, actOrder: true, damp: 0.01, blockSize: 128 };
const target = 2;

// Debian's python3-torch lives in /usr/bin/python3's dist-packages; a pyenv/venv python3 earlier
// on PATH would not see it, so the first interpreter that can import torch wins.
function findPython(): string | undefined {
  const candidates = [process.env.MOEQ_PYTHON, "python3", "/usr/bin/python3"].filter((p): p is string => !!p);
  return candidates.find((p) => spawnSync(p, ["-c", "import torch"]).status === 0);
}

function ensureTorch(): string {
  const found = findPython();
  if (found) return found;
  console.log("setup: python3-torch is missing; installing it with apt-get (Debian's CPU build)");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["install", "-y", "--no-install-recommends", "python3-torch"], { stdio: "inherit", env });
  const after = findPython();
  if (!after) throw new Error("python3-torch installed but no python3 can import torch");
  return after;
}

// Deterministic calibration-like data: correlated, unevenly scaled activations, H = 2/T·XᵀX.
function makeInputs() {
  let s = 12345;
  const rnd = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const x = new Float32Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    let carry = 0;
    for (let c = 0; c < cols; c++) {
      carry = 0.6 * carry + rnd();
      x[t * cols + c] = carry * (0.2 + (1.8 * c) / cols);
    }
  }
  const sum = new Float64Array(cols * cols);
  native.hessianAccumulateSync(sum, x, tokens, cols);
  const h = Float32Array.from(sum, (v) => (2 * v) / tokens);
  const w = Float32Array.from({ length: rows * cols }, () => rnd() * 0.1);
  return { w, h };
}

const python = ensureTorch();
const { w, h } = makeInputs();
const dir = mkdtempSync(join(tmpdir(), "moeq-gptq-bench-"));
try {
  writeFileSync(join(dir, "W.f32"), w);
  writeFileSync(join(dir, "H.f32"), h);
  const args = [
    join(here, "gptq_oracle_bench.py"),
    oracle,
    join(dir, "W.f32"),
    join(dir, "H.f32"),
    String(rows),
    String(cols),
    String(settings.bits),
    String(settings.groupSize),
    settings.symmetric ? "1" : "0",
    settings.actOrder ? "1" : "0",
    String(settings.damp),
    String(reps),
    dir,
  ];
  execFileSync(python, args, { stdio: "inherit" });
  const py = JSON.parse(readFileSync(join(dir, "times.json"), "utf8")) as Record<string, number | string>;

  let ours = Number.POSITIVE_INFINITY;
  let res: Awaited<ReturnType<typeof gptq>> | undefined;
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    res = await gptq(w, rows, cols, h, settings);
    ours = Math.min(ours, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  if (!res) throw new Error("no run");
  // code agreement with the float64 oracle on this case
  const toF32 = (name: string) => {
    const b = readFileSync(join(dir, name));
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  const [Q, S, Z] = [toF32("Q.f32"), toF32("scale.f32"), toF32("zero.f32")];
  const nG = S.length / rows;
  let same = 0;
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const g = r * nG + res.gIdx[c];
      if (res.codes[r * cols + c] === Math.round(Q[r * cols + c] / S[g]) + Z[g]) same++;
    }
  const f64 = Number(py.f64);
  const f32 = Number(py.f32);
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model}); torch ${py.torch}`);
  console.log(`GPTQ ${rows}×${cols}, ${JSON.stringify(settings)}, best of ${reps}`);
  console.log(`| variant | seconds | oracle / ours |\n|---|---|---|`);
  console.log(`| moeq native (f64) | ${ours.toFixed(4)} | — |`);
  console.log(`| oracle float64 (${py.f64_threads} thr) | ${f64.toFixed(4)} | ${(f64 / ours).toFixed(2)} |`);
  console.log(`| oracle float32 (${py.f32_threads} thr) | ${f32.toFixed(4)} | ${(f32 / ours).toFixed(2)} |`);
  console.log(
    `codes identical to the float64 oracle: ${same}/${rows * cols}; loss ours ${res.loss} vs oracle ${py.f64_loss}`,
  );
  const ok = f64 / ours >= target;
  console.log(ok ? `OK: ≥ ${target}× faster than the float64 oracle` : `FAIL: under ${target}× the float64 oracle`);
  process.exitCode = ok ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}

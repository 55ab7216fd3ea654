#!/usr/bin/env bash
# The scheme table of docs/formats.md: moeq quantize on the trained model (experts only, 64×256
# held-out Brown windows) with W4A16-GPTQ, W8A16, FP8 (block), W8A8-FP8, NVFP4 and MXFP4, then one
# markdown table from each run's run-stats.json (the run's evaluation quantizes activations the
# way the checkpoint states: W8A8 static input scales, NVFP4 W4A4, FP8-block dynamic per token
# group) plus, for the schemes that quantize activations, `moeq eval --weights-only` of the same
# checkpoint (activations f32) beside it.
# Usage: bash test/bench/schemes.sh [out-dir]   (CALIB=brown:16x256 to change the calibration)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/infra/env.sh"
model="$root/../shared/models/tiny-qwen3moe-brown"
out="${1:-$(mktemp -d /tmp/moeq-schemes-XXXXXX)}"
calib="${CALIB:-brown:128x256}"
mkdir -p "$out"
run() { # name, then moeq quantize flags
  local name="$1"; shift
  if [ ! -f "$out/$name.moeq-work/report/run-stats.json" ]; then
    "$root/moeq" quantize "$model" --out "$out/$name" --calib "$calib" "$@" --json > "$out/$name.json" 2> "$out/$name.log"
  fi
}
weights_only() { # name: the same checkpoint evaluated with f32 activations
  if [ ! -s "$out/$1.weights-only.json" ]; then
    "$root/moeq" eval "$model" "$out/$1" --weights-only --json > "$out/$1.weights-only.json.tmp" 2> "$out/$1.weights-only.log"
    mv "$out/$1.weights-only.json.tmp" "$out/$1.weights-only.json"
  fi
}
# the runs are independent: run them side by side (each stage process uses --threads BLAS threads)
run w4a16-gptq --scheme w4a16 --algo gptq --group-size 32 --format compressed-tensors &
run w8a16-rtn --scheme w8a16 --algo rtn --group-size 32 --format compressed-tensors &
run fp8-block --scheme fp8-block --algo rtn --format fp8-block &
run w8a8-fp8 --scheme w8a8-fp8 --algo gptq --format compressed-tensors &
run nvfp4 --scheme nvfp4 --algo gptq --format compressed-tensors &
run mxfp4 --scheme mxfp4 --algo rtn --format gpt-oss-mxfp4 &
wait
for n in fp8-block w8a8-fp8 nvfp4; do weights_only "$n" & done
wait
echo "| scheme | format | activations as served | mean KLD | ± | p99 KLD | same top | mean KLD, weights only |"
echo "|---|---|---|---|---|---|---|---|"
for n in w4a16-gptq w8a16-rtn fp8-block w8a8-fp8 nvfp4 mxfp4; do
  node -e '
    const fs = require("fs");
    const [stats, report, wo, name] = process.argv.slice(1);
    const s = JSON.parse(fs.readFileSync(stats, "utf8"));
    const acts = JSON.parse(fs.readFileSync(report, "utf8")).settings.activations ?? "?";
    const k = s.kld, f = s.output.format ?? "";
    const served = acts.startsWith("weights only") ? "none (weight-only)" : acts.replace(/ on the inputs of .*/, "");
    const w = fs.existsSync(wo) ? JSON.parse(fs.readFileSync(wo, "utf8")).kld.kld.mean.toFixed(5) : "= as served";
    console.log(`| ${name} | ${f} | ${served} | ${k.kld.mean.toFixed(5)} | ${k.kld.uncertainty.toFixed(5)} | ${k.kld.p99.toFixed(4)} | ${(100 * k.sameTop.value).toFixed(2)} % | ${w} |`);
  ' "$out/$n.moeq-work/report/run-stats.json" "$out/$n.moeq-work/report/report.json" "$out/$n.weights-only.json" "$n"
done

#!/usr/bin/env bash
# The scheme table of docs/formats.md: moeq quantize on the trained model (experts only, 64×256
# held-out Brown windows) with W4A16-GPTQ, W8A16, FP8 (block), NVFP4 and MXFP4, then one
# markdown table of mean KLD, p99 KLD and same-top rate from each run's run-stats.json.
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
# the five runs are independent: run them side by side (each stage process uses --threads BLAS threads)
run w4a16-gptq --scheme w4a16 --algo gptq --group-size 32 --format compressed-tensors &
run w8a16-rtn --scheme w8a16 --algo rtn --group-size 32 --format compressed-tensors &
run fp8-block --scheme fp8-block --algo rtn --format fp8-block &
run nvfp4 --scheme nvfp4 --algo gptq --format compressed-tensors &
run mxfp4 --scheme mxfp4 --algo rtn --format gpt-oss-mxfp4 &
wait
echo "| scheme | format | mean KLD | ± | p99 KLD | same top |"
echo "|---|---|---|---|---|---|"
for n in w4a16-gptq w8a16-rtn fp8-block nvfp4 mxfp4; do
  node -e '
    const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const k = s.kld, f = s.output.format ?? "";
    console.log(`| ${process.argv[2]} | ${f} | ${k.kld.mean.toFixed(5)} | ${k.kld.uncertainty.toFixed(5)} | ${k.kld.p99.toFixed(4)} | ${(100 * k.sameTop.value).toFixed(2)} % |`);
  ' "$out/$n.moeq-work/report/run-stats.json" "$n"
done

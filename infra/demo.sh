#!/usr/bin/env bash
# The main job on an embedded default (the README's `bash infra/dev demo`): synthesize a small
# random-weight Qwen3-MoE checkpoint with the real on-disk layout, then quantize it with the stage
# pipeline (GPTQ W4 g32, the default calibration policy, embedded nats-server) and print the summary with the
# KLD table. Everything goes to a temp dir (or $MOEQ_DEMO_DIR); pass extra `moeq quantize` flags
# as arguments, e.g. `bash infra/dev demo --algo rtn`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
./moeq selftest
dir=${MOEQ_DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/moeq-demo-XXXXXX")}
mkdir -p "$dir"
if [[ ! -f $dir/model/config.json ]]; then
  ./moeq synth --arch qwen3_moe --preset tiny --layers 4 --seed 0 --out "$dir/model"
fi
rm -rf "$dir/out" "$dir/out.moeq-work"
./moeq quantize "$dir/model" --out "$dir/out" --algo gptq --bits 4 --group-size 32 \
  --calib random:32x128 --eval random:16x128 "$@"
echo "demo: quantized checkpoint in $dir/out, work dir (events, logs, report) in $dir/out.moeq-work"

#!/usr/bin/env bash
# What GPTQ on the attention projections buys: `moeq quantize --targets experts+attention --algo
# gptq` on the trained model twice — attention by GPTQ (the default) and attention by RTN (graph
# rtn-linears.yaml: calibrator option nonExpertAlgorithm=rtn), experts GPTQ in both, same
# calibration and evaluation. Prints both mean KLDs and their ratio; fails unless GPTQ attention is
# lower. Heavy (two full runs on the trained model): not part of the test suite.
#   bash stages/calibrator/bench/attention-gptq.sh [model-dir] [extra moeq quantize args...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
source "$root/infra/env.sh"
model=${1:-"$root/../shared/models/tiny-qwen3moe-brown"}
shift || true
work=$(mktemp -d "${TMPDIR:-/tmp}/moeq-attn-gptq.XXXXXX")
trap 'rm -rf "$work"' EXIT
common=(--targets experts+attention --algo gptq --group-size 32 --calib brown:16x256 --json "$@")
"$root/moeq" quantize "$model" --out "$work/gptq" "${common[@]}" >"$work/gptq.json"
"$root/moeq" quantize "$model" --out "$work/rtn" --graph "$here/rtn-linears.yaml" "${common[@]}" >"$work/rtn.json"
node -e '
  const fs = require("node:fs");
  const k = (f) => JSON.parse(fs.readFileSync(f, "utf8")).kld.kld.mean;
  const g = k(process.argv[1]);
  const r = k(process.argv[2]);
  console.log(`experts+attention, experts GPTQ: mean KLD ${g.toFixed(5)} with GPTQ attention, ${r.toFixed(5)} with RTN attention (ratio ${(g / r).toFixed(3)})`);
  process.exit(g < r ? 0 : 1);
' "$work/gptq.json" "$work/rtn.json"

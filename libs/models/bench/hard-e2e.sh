#!/usr/bin/env bash
# End to end on the hard architectures' tiny fixtures: `moeq quantize` (GPTQ int4 group 16, every
# linear, small random calibration; the run ends with its own evaluation) then `moeq eval` of the
# written checkpoint against the fixture. Fails when a command fails or a mean KLD is not finite
# and below MAX_KLD. Heavy (about a minute per model): not part of the test suite.
#   bash libs/models/bench/hard-e2e.sh [model_type...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
source "$root/infra/env.sh"
fixtures="$root/../shared/fixtures/tiny-random"
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(deepseek_v2 deepseek_v3 deepseek_v32 glm4_moe_lite mimo_v2_flash qwen3_next qwen3_5_moe_text)
MAX_KLD=${MAX_KLD:-0.5}
work=$(mktemp -d "${TMPDIR:-/tmp}/moeq-hard-e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
status=0
for a in "${archs[@]}"; do
  out="$work/$a"
  start=$(date +%s)
  if ! "$root/moeq" quantize "$fixtures/$a" --out "$out" --calib random:8x32 --eval random:4x32 \
      --targets all-linear --group-size 16 --json >"$work/$a.quantize.json" 2>"$work/$a.quantize.err"; then
    echo "$a: moeq quantize failed"; tail -5 "$work/$a.quantize.err"; status=1; continue
  fi
  if ! "$root/moeq" eval "$fixtures/$a" "$out" --texts random:4x32 --json >"$work/$a.eval.json" 2>"$work/$a.eval.err"; then
    echo "$a: moeq eval failed"; tail -5 "$work/$a.eval.err"; status=1; continue
  fi
  node -e '
    const [a, q, e, max, secs] = process.argv.slice(1);
    const fs = require("node:fs");
    const qk = JSON.parse(fs.readFileSync(q, "utf8")).kld.kld.mean;
    const ej = JSON.parse(fs.readFileSync(e, "utf8"));
    const ek = (ej.kld?.kld ?? ej.kld ?? ej).mean;
    const ok = [qk, ek].every((k) => Number.isFinite(k) && k >= 0 && k < Number(max));
    console.log(`${a}: quantize+eval ok in ${secs}s, mean KLD ${qk.toFixed(4)} (quantize run), ${Number(ek).toFixed(4)} (moeq eval)${ok ? "" : "  FAIL"}`);
    process.exit(ok ? 0 : 1);
  ' "$a" "$work/$a.quantize.json" "$work/$a.eval.json" "$MAX_KLD" "$(( $(date +%s) - start ))" || status=1
done
exit $status

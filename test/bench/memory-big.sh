#!/usr/bin/env bash
# Slow checks of issue 21 that do not fit CI (not run by `infra/dev test`):
#  1. sha256File of a sparse file past 2 GiB equals coreutils' sha256sum (~30 s of hashing on a
#     2-core VM; the CI test libs/store/test/files.test.ts covers several chunks of a small file);
#  2. layer activations past 2 GiB: a tiny Qwen3-MoE (hidden 256) calibrated on 2080×1024 random
#     tokens (the layer-1 input file is 2080·1024·256·4 B = 2.03 GiB), the calibrator SIGKILLed
#     once it has written it, so its restart reads it back (readFileSync refused files > 2 GiB);
#     the run must complete with the shards of an undisturbed run. Needs ~12 GiB of memory (the
#     calibrator holds the activations, residual, attention output and MoE output of every token).
# Usage: bash test/bench/memory-big.sh [dir]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/infra/env.sh"
dir="${1:-$(mktemp -d /tmp/moeq-memory-big-XXXXXX)}"
mkdir -p "$dir"
cli="$root/libs/cli/dist/main.js"

echo "== 1. streaming sha256 of a sparse file past 2 GiB"
f="$dir/sparse.bin"
rm -f "$f"; truncate -s $((2**31 + 12345)) "$f"
printf head | dd of="$f" conv=notrunc status=none
printf tail | dd of="$f" bs=1 seek=$((2**31 + 12341)) conv=notrunc status=none
want=$(sha256sum "$f" | cut -d' ' -f1)
got=$(node --input-type=module -e "import { sha256File } from '$root/libs/store/dist/index.js'; console.log(sha256File('$f'))")
rm -f "$f"
[ "$want" = "$got" ] || { echo "sha256File $got != sha256sum $want"; exit 1; }
echo "ok: $got"

echo "== 2. calibrator restart reading a 2.03 GiB layer input"
model="$dir/model"
[ -f "$model/config.json" ] || node "$cli" synth --arch qwen3_moe --preset tiny --layers 2 --seed 3 --out "$model" > /dev/null
flags=(--calib random:2080x1024 --eval random:4x128 --policy routed --batch-windows 64 --quantizers 1)
rm -rf "$dir/undisturbed" "$dir/undisturbed.moeq-work" "$dir/killed" "$dir/killed.moeq-work"
node "$cli" quantize "$model" --out "$dir/undisturbed" "${flags[@]}" --json > "$dir/undisturbed.json"
node "$cli" quantize "$model" --out "$dir/killed" "${flags[@]}" --json > "$dir/killed.json" &
run=$!
log="$dir/killed.moeq-work/logs/calibrator.0.log"
until grep -q "layer 0 done" "$log" 2>/dev/null; do sleep 1; done
size=$(stat -c %s "$dir/killed.moeq-work/acts/layer-1.input.f32")
pid=$(grep -o "started (pid [0-9]*)" "$log" | tail -1 | grep -o "[0-9]*")
kill -9 "$pid"
echo "killed the calibrator (pid $pid) with a $size-byte layer-1 input on disk"
wait $run
[ "$size" -gt $((2**31)) ] || { echo "the layer input is not past 2 GiB"; exit 1; }
grep -c "started (pid" "$log" | grep -qx 2 || { echo "the calibrator did not restart once"; exit 1; }
grep -q "calibrating on 2080×1024 tokens from layer 1" "$log" || { echo "the restart did not resume at layer 1"; exit 1; }
a=$(cd "$dir/undisturbed" && sha256sum *.safetensors)
b=$(cd "$dir/killed" && sha256sum *.safetensors)
[ "$a" = "$b" ] || { echo "shards differ:"; echo "$a"; echo "$b"; exit 1; }
echo "ok: resumed from the 2.03 GiB input, shards identical"

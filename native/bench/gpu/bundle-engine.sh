#!/usr/bin/env bash
# Bundles the device-engine scripts (goldens.ts, engine-layer.ts: they need @moeq/models, i.e.
# node_modules) and packs the tiny-random fixtures (../shared does not travel) into
# .gpu-carry/pipeline/engine/ — the folder a device call carries (run it in the checkout the call sends, or stage a worktree with stage-tree.sh) — for `run.sh engine`.
# Run here, from the repository root, after `turbo run build`.
set -euo pipefail
source infra/env.sh
out=.gpu-carry/pipeline/engine
mkdir -p "$out"
for s in goldens engine-layer; do
  npx rolldown "native/bench/gpu/$s.ts" --platform node --format esm --file "$out/$s.mjs" --log-level warn
done
tar cJf "$out/tiny-random.tar.xz" -C ../shared/fixtures --exclude=report.json tiny-random
du -sh "$out"/*

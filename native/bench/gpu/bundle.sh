#!/usr/bin/env bash
# Bundles the JS that runs on the GPU machine and needs node_modules (the store handoff) into
# .gpu-carry/bundle/ (git-ignored, carried). Run here, from the repository root, after a build.
set -euo pipefail
source infra/env.sh
mkdir -p .gpu-carry/bundle
npx rolldown native/bench/gpu/store-handoff.ts --platform node --format esm --file .gpu-carry/bundle/store-handoff.mjs
npx rolldown libs/store/test/fixtures/cuda-consumer.ts --platform node --format esm --file .gpu-carry/bundle/cuda-consumer.mjs
node native/bench/gpu/bundle-pipeline.mjs
du -sh .gpu-carry/bundle/* .gpu-carry/pipeline

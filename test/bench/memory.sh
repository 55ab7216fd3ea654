#!/usr/bin/env bash
# Memory and disk benchmark of issue 21 (a separate command with its own exit status, not a CI
# test): Qwen3-30B-A3B-shaped models with 2 and 4 layers, GPTQ W4A16 g128, brown:16x512
# calibration; see test/bench/memory.mjs for what it prints and checks.
# Usage: bash test/bench/memory.sh [dir] [layers...]   (needs ~15 GB free in dir; EXTRA= adds flags)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/infra/env.sh"
exec nice node "$root/test/bench/memory.mjs" "$@"

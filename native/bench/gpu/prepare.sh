#!/usr/bin/env bash
# Fills .gpu-carry/ (git-ignored) with everything run.sh needs on the GPU machine, from the
# repository root on a CPU machine: Node + nats-server (../shared/device/prepare.sh), the Debian
# OpenBLAS runtime + headers (the addon's CPU kernels link it; the GPU machine has none), the GPTQ
# oracle fixtures and perf_anchor.py (../shared does not travel), and the bundled store handoff.
set -euo pipefail
root=$(pwd)
bash ../shared/device/prepare.sh
dest=.gpu-carry
if [[ ! -f $dest/openblas.tar.xz ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lib" "$tmp/include"
  cp -L /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 /usr/lib/x86_64-linux-gnu/libgfortran.so.5 \
    /usr/lib/x86_64-linux-gnu/libquadmath.so.0 "$tmp/lib/"
  cp -L /usr/include/x86_64-linux-gnu/cblas.h /usr/include/x86_64-linux-gnu/openblas_config.h "$tmp/include/"
  tar cJf "$dest/openblas.tar.xz" -C "$tmp" lib include
fi
mkdir -p "$dest/fixtures"
cp -r ../shared/fixtures/gptq "$dest/fixtures/"
cp ../shared/device/oracles/perf_anchor.py "$dest/"
cd "$root" && bash native/bench/gpu/bundle.sh
du -sh "$dest"

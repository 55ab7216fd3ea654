#!/usr/bin/env bash
# One call on the GPU machine (device tool), from the repository root, carrying .gpu-carry,
# node_modules/node-addon-api and node_modules/node-api-headers:
#   bash native/bench/gpu/run.sh [checks|ops|store|bench|engine|all|pipeline]     (logs and JSON under $OUT)
# Several at once in one word: run.sh "checks ops".
# `equiv`: --device cuda vs --device cpu codes and KLD on the tiny fixtures copied into .gpu-fixtures/.
# `pipeline` also prints the per-layer split (pipeline-report.mjs) and, with BOUND=1, runs layer.ts
# and perf_anchor.py at the same token count.
# `ops`: the forward-pass kernels at model sizes against the CPU kernels (native/bench/gpu/ops.ts).
# `engine`: the device engine (libs/models DeviceEngine) against the transformers goldens and one
# Qwen3-30B-A3B-shaped layer against PyTorch (needs bundle-engine.sh's .gpu-carry/pipeline/engine).
# `pipeline`: the whole `moeq quantize --device cuda` on a synthesized Qwen3-30B-A3B-shaped model
# (LAYERS, default 8; W4A16 group GROUP, default 128; the default policy; CALIB, default
# random:16x128 while the forward runs on the CPU), CLI and stages from .gpu-carry/pipeline
# (bundle-pipeline.mjs); per-layer times from the run's summary and stage logs, peak GPU memory
# sampled by nvidia-smi every 100 ms. PRESYNTH=1 on an earlier invocation synthesizes the model in
# the background while the checks run.
# Builds the addon with -DWITH_CUDA=ON (cmake directly: no npm there), runs the GPU-vs-CPU checks
# (native/bench/gpu/check.ts), perf_anchor.py and the layer benchmark (native/bench/gpu/layer.ts).
# .gpu-carry holds: Node + nats-server (../shared/device/prepare.sh), openblas.tar.xz (the Debian
# OpenBLAS .so + libgfortran + headers: the CPU kernels of the same addon need it), fixtures/gptq
# and perf_anchor.py copied from ../shared (which does not travel), bundle/ (bundle.sh).
set -uo pipefail
what=${1:-all}
want() { [[ $what == all || " $what " == *" $1 "* ]]; }
OUT=${OUT:-/tmp/moeq-gpu-out}
mkdir -p "$OUT"
root=$(pwd)
source .gpu-carry/activate.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
mkdir -p /tmp/oblas && tar xJf .gpu-carry/openblas.tar.xz -C /tmp/oblas
export LD_LIBRARY_PATH=/tmp/oblas/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# tests locate ../shared beside the checkout
mkdir -p ../shared/fixtures && cp -r .gpu-carry/fixtures/gptq ../shared/fixtures/
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
build() {
  cmake -S native -B native/build-gpu -DWITH_CUDA=ON -DCMAKE_BUILD_TYPE=Release "$@" \
    -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DCMAKE_JS_INC="$root/node_modules/node-api-headers/include" \
    -DCBLAS_INCLUDE_DIR=/tmp/oblas/include -DOPENBLAS_LIB=/tmp/oblas/lib/libopenblas.so.0 &&
    cmake --build native/build-gpu -j"$(nproc)"
}
t0=$(date +%s)
if ! build >"$OUT/build.log" 2>&1; then
  echo "static cuBLAS/cuSOLVER build failed; trying the shared libraries" | tee -a "$OUT/build.log"
  tail -30 "$OUT/build.log"
  rm -rf native/build-gpu
  build -DMOEQ_CUDA_SHARED_LIBS=ON >>"$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 3; }
fi
echo "build: $(( $(date +%s) - t0 )) s"
export MOEQ_NATIVE_ADDON=$root/native/build-gpu/moeq_native.node
ldd "$MOEQ_NATIVE_ADDON" | grep -E 'cublas|cusolver|cudart|openblas' || true
rc=0
stubs() {
  # dist/ is git-ignored and does not travel: each entry point becomes a stub importing its bundle
  local b=.gpu-carry/pipeline/a/b
  mkdir -p libs/cli/dist && echo "import \"../../../$b/moeq.mjs\";" >libs/cli/dist/main.js
  for s in loader router-override calibrator quantizer packer evaluator; do
    mkdir -p "stages/$s/dist" && echo "import \"../../../$b/$s.mjs\";" >"stages/$s/dist/main.js"
  done
}
synth() {
  rm -rf /tmp/moeq-synth /tmp/moeq-synth.done
  local t1=$(date +%s)
  node libs/cli/dist/main.js synth --arch qwen3_moe --preset qwen3-30b-a3b --layers "${LAYERS:-8}" --out /tmp/moeq-synth 2>&1 | tail -3
  echo "synth: $(( $(date +%s) - t1 )) s"
  touch /tmp/moeq-synth.done
}
if [[ -n ${PRESYNTH:-} ]]; then
  # the pipeline's model synthesized on the CPU while the checks run (a later `run.sh pipeline` waits for it)
  stubs
  synth >/tmp/moeq-synth.log 2>&1 &
fi
if want checks; then
  node native/bench/gpu/check.ts /tmp/checks.json 2>&1 | tee "$OUT/checks.log"
  rc=$(( rc | ${PIPESTATUS[0]} ))
fi
if want ops; then
  node native/bench/gpu/ops.ts --out "$OUT/ops.json" 2>&1 | tee "$OUT/ops.log"
  rc=$(( rc | ${PIPESTATUS[0]} ))
fi
if want store; then
  # bundled here by native/bench/gpu/bundle.sh (the store needs node_modules)
  node .gpu-carry/bundle/store-handoff.mjs .gpu-carry/bundle/cuda-consumer.mjs 2>&1 | tee "$OUT/store.log"
  rc=$(( rc | ${PIPESTATUS[0]} ))
fi
if want bench; then
  PYTHONUNBUFFERED=1 python3 .gpu-carry/perf_anchor.py "$OUT/anchor.json" 65536 8 >/tmp/anchor.log 2>&1
  tail -25 /tmp/anchor.log
  for p in ${MOEQ_BENCH_PRECISIONS:-tf32 bf16}; do
    node native/bench/gpu/layer.ts --anchor "$OUT/anchor.json" --precision "$p" --out "$OUT/layer-$p.json" 2>&1 | tee "/tmp/layer-$p.log"
    rc=$(( rc | ${PIPESTATUS[0]} ))
  done
fi
if want engine && [[ -d .gpu-carry/pipeline/engine ]]; then
  # the device engine (bundle-engine.sh): goldens of every tiny-random fixture in f32 + kernel
  # checks, then one Qwen3-30B-A3B-shaped layer (ENGINE_SEQS × 2048 tokens) against PyTorch
  e=.gpu-carry/pipeline/engine
  mkdir -p /tmp/engine-fx && tar xJf "$e/tiny-random.tar.xz" -C /tmp/engine-fx
  node "$e/goldens.mjs" /tmp/engine-fx/tiny-random --precision f32 --out "$OUT/goldens.json" 2>&1 | tee "$OUT/goldens.log" | tail -45
  rc=$(( rc | ${PIPESTATUS[0]} ))
  for p in ${ENGINE_PRECISIONS:-tf32}; do
    timeout "${ENGINE_TIMEOUT:-150}" node "$e/engine-layer.mjs" --seqs "${ENGINE_SEQS:-512}" --precision "$p" --out "$OUT/engine-layer-$p.json" 2>&1 | tee "$OUT/engine-layer-$p.log" | tail -5
    rc=$(( rc | ${PIPESTATUS[0]} ))
    timeout "${ENGINE_TIMEOUT:-150}" python3 native/bench/gpu/engine_layer_ref.py "$OUT/torch-layer-$p.json" "${ENGINE_SEQS:-512}" 2048 "$p" 2>&1 | tail -5 | tee "$OUT/torch-layer-$p.log"
  done
fi
if want equiv; then
  # --device cuda against --device cpu on the tiny fixtures (carried in .gpu-fixtures/): every policy
  # family the routing plan has, all runs in parallel; ≥ 99 % identical codes and mean KLD within 2 %
  stubs
  pids=()
  for fx in ${EQUIV_FIXTURES:-qwen3_moe llama4_text}; do
    for pol in ${EQUIV_POLICIES:-soft routed}; do
      for dev in cpu cuda; do
        o=/tmp/eq/$fx-$pol-$dev
        mkdir -p /tmp/eq
        timeout "${EQUIV_TIMEOUT:-150}" node libs/cli/dist/main.js quantize ".gpu-fixtures/$fx" --out "$o" --device $dev --policy $pol --calib random:8x64 \
          --eval random:2x32 --quantizers 1 --threads 1 --keep-artifacts --json >"$o.json" 2>"$o.err" &
        pids+=($!)
      done
    done
  done
  for p in "${pids[@]}"; do wait "$p" || echo "a quantize run failed (exit $?)"; done
  for fx in ${EQUIV_FIXTURES:-qwen3_moe llama4_text}; do
    for pol in ${EQUIV_POLICIES:-soft routed}; do
      o=/tmp/eq/$fx-$pol
      grep -h "experts on cuda\|per expert on the CPU path" "$o-cuda.moeq-work/logs/calibrator.0.log" 2>/dev/null | head -2
      for d in cpu cuda; do [[ -s $o-$d.json ]] || { echo "$fx $pol $d:"; tail -5 "$o-$d.err"; tail -20 "$o-$d.moeq-work/logs/"*.log 2>/dev/null | tail -40; }; done
      node native/bench/gpu/compare-codes.mjs "$o-cpu" "$o-cuda" 2>&1 | tee -a "$OUT/equiv.log"
      rc=$(( rc | ${PIPESTATUS[0]} ))
    done
  done
fi
if [[ $what == *pipeline* ]]; then
  stubs
  m=/tmp/moeq-synth q=/tmp/moeq-q
  rm -rf "$q" "$q.moeq-work"
  if [[ -f /tmp/moeq-synth.log ]]; then
    while [[ ! -f /tmp/moeq-synth.done ]]; do sleep 1; done # started by PRESYNTH
    cp /tmp/moeq-synth.log "$OUT/synth.log"
  else
    synth | tee "$OUT/synth.log"
  fi
  cat "$OUT/synth.log"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/gpu-mem.csv" 2>/dev/null &
  smi=$!
  t1=$(date +%s)
  timeout "${PIPELINE_TIMEOUT:-3000}" node libs/cli/dist/main.js quantize "$m" --out "$q" --device cuda --bits 4 --group-size "${GROUP:-128}" --calib "${CALIB:-random:16x128}" --eval "${EVAL:-random:4x64}" \
    --quantizers "${QUANTIZERS:-2}" --threads "${THREADS:-8}" --json >"$OUT/pipeline.json" 2>"$OUT/pipeline.err"
  prc=$?
  kill "$smi" 2>/dev/null
  echo "quantize --device cuda: exit $prc in $(( $(date +%s) - t1 )) s; peak GPU memory $(sort -n "$OUT/gpu-mem.csv" | tail -1) MiB (nvidia-smi, whole card)"
  tail -5 "$OUT/pipeline.err"
  node native/bench/gpu/pipeline-report.mjs "$OUT/pipeline.json" "$q.moeq-work" "$OUT/gpu-mem.csv" "$OUT/pipeline-layers.json" 2>&1 | tee "$OUT/pipeline-report.txt"
  mkdir -p "$OUT/work" && cp -r "$q.moeq-work/logs" "$OUT/work/" 2>/dev/null
  if [[ -n ${BOUND:-} ]]; then
    # the same layer shape in the batched kernels (layer.ts, f32 Hessians like the product path) and the
    # PyTorch per-expert reference, at the pipeline's calibration token count, on the same card
    n=$(( $(echo "${CALIB:-random:16x128}" | sed -E 's/.*:([0-9]+)x([0-9]+)/\1*\2/') ))
    PYTHONUNBUFFERED=1 python3 .gpu-carry/perf_anchor.py "$OUT/anchor.json" "$n" "${ANCHOR_EXPERTS:-4}" >/tmp/anchor.log 2>&1; tail -4 /tmp/anchor.log
    node native/bench/gpu/layer.ts --anchor "$OUT/anchor.json" --precision f32 --tokens "$n" --min-ratio 0 --out "$OUT/layer-f32.json" 2>&1 | tail -12
  fi
  rc=$(( rc | prc ))
fi
exit $rc

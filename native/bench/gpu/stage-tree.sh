#!/usr/bin/env bash
# Stages another checkout of the project (a git worktree a helper works in) for a device call,
# which only carries this checkout: copies SRC's tracked and untracked-not-ignored files, plus its
# built .gpu-carry/pipeline bundle if any, into .wt/NAME here (add `.wt/` to .git/info/exclude)
# with a prelude. Then call the device with carry [".gpu-carry", ".wt/NAME",
# "node_modules/node-addon-api", "node_modules/node-api-headers"] and a command starting
# `source .wt/NAME/.prelude.sh;` (it enters the staged tree and links this checkout's carry in).
#   bash native/bench/gpu/stage-tree.sh NAME SRC
set -euo pipefail
name=$1 src=$2
root=$(git rev-parse --show-toplevel)
dst=$root/.wt/$name
rm -rf "$dst" && mkdir -p "$dst"
(cd "$src" && git ls-files -co --exclude-standard -z | rsync -a --from0 --ignore-missing-args --files-from=- ./ "$dst/")
if [[ -d $src/.gpu-carry/pipeline ]]; then mkdir -p "$dst/.gpu-bundle" && cp -r "$src/.gpu-carry/pipeline" "$dst/.gpu-bundle/"; fi
cat >"$dst/.prelude.sh" <<'PRELUDE'
# On the device, from the repository root: source .wt/NAME/.prelude.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
_root=$(cd ../.. && pwd)
mkdir -p .gpu-carry node_modules
for _f in "$_root"/.gpu-carry/*; do [[ $(basename "$_f") == pipeline ]] || ln -sfn "$_f" .gpu-carry/; done
if [[ -d .gpu-bundle/pipeline ]]; then rm -rf .gpu-carry/pipeline; cp -r .gpu-bundle/pipeline .gpu-carry/pipeline; fi
ln -sfn "$_root/node_modules/node-addon-api" node_modules/node-addon-api
ln -sfn "$_root/node_modules/node-api-headers" node_modules/node-api-headers
PRELUDE
du -sh "$dst"

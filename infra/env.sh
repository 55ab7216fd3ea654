# Sourced by every project script: puts the project's Node (when provisioned) first on PATH.
_moeq_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -x $_moeq_root/.toolchain/node/bin/node ]]; then
  export PATH="$_moeq_root/.toolchain/node/bin:$PATH"
fi
export PATH="$_moeq_root/node_modules/.bin:$PATH"
unset _moeq_root

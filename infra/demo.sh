#!/usr/bin/env bash
# The main job on an embedded default. Grows with the project: see README.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
./moeq selftest

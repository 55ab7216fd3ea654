#!/usr/bin/env bash
# Runs every package's tests in one vitest run (root vitest.config.ts lists the projects) and
# ends with a plain "N passed, N failed" line.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source infra/env.sh
report=$(mktemp --suffix=.json)
set +e
vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
rc=$?
set -e
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + (r.numTodoTests||0)} skipped`);
  if (r.numTotalTests === 0) { console.error("no tests ran"); process.exit(1); }
' "$report" || rc=1
rm -f "$report"
exit $rc

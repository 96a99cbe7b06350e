#!/usr/bin/env bash
# The README's main command (`make demo`): the whole pipeline, offline, on the embedded synthetic dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
benchmark=".venv/bin/benchmark"
common=(--loss proxy_anchor --dataset synthetic --protocol quick)

"$benchmark" datasets verify synthetic
"$benchmark" tune "${common[@]}" --trials 3
"$benchmark" test "${common[@]}" --reproductions 2 --keep-models best  # models for `benchmark embed`
"$benchmark" status
"$benchmark" report --out reports/index.html
echo "open reports/index.html in a browser for the leaderboard"

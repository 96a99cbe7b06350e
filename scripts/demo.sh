#!/usr/bin/env bash
# The README's main command (`make demo`): the whole pipeline, offline, on the embedded synthetic dataset, in a few
# minutes of CPU. Two losses, each: tune (1 trial: the search space's defaults, enqueued as trial 1), test with 5
# reproductions (common seeds, so the losses are compared pairwise), then status and the report.
# Sized for ~5 min on 2 CPU cores: a 100-class x 12-image synthetic set and the quick preset shortened to 10 epochs
# of 10 steps (the full quick preset runs up to 40 x 30 steps per fold; see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
benchmark=".venv/bin/benchmark"
export BENCHMARK_SYNTHETIC_SIZE="${BENCHMARK_SYNTHETIC_SIZE:-100x12}"
storage="sqlite:///results/demo.db"
sizing=(--dataset synthetic --protocol quick --set max_epochs=10 --set iterations_per_epoch=10 --set patience=10)

"$benchmark" datasets verify synthetic
for loss in proxy_anchor contrastive; do
  "$benchmark" tune --loss "$loss" "${sizing[@]}" --trials 1 --storage "$storage"
  "$benchmark" test --loss "$loss" "${sizing[@]}" --reproductions 5 --storage "$storage" \
    --keep-models best  # models for `benchmark embed`
done
"$benchmark" status --storage "$storage"
"$benchmark" report --storage "$storage" --out reports/index.html
"$benchmark" report --storage "$storage" --format md
echo "open reports/index.html in a browser for the leaderboard"

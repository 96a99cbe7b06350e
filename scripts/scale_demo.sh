#!/usr/bin/env bash
# Issue 8's demonstration (`make scale-demo`): on the synthetic dataset with the quick preset, test
#  - proxy_anchor and soft_triple with a constant scale vs a linear decay to 4 after training (proxy_anchor also
#    with the switch and quadratic schedules to 4),
#  - each loss's linear "decay" to its own scale (proxy_anchor alpha 32, soft_triple la 20): the same extra epochs
#    at a constant scale, which tells the decay apart from merely training longer,
#  - proxy_anchor with m-per-class vs fixed-representative batches,
# each with REPRODUCTIONS retrainings (4 fold models each) and 95 % t-intervals. The losses keep their search-space
# defaults; nothing is tuned. Results: results/scale-demo.db, results/scale-demo.md, reports/scale-demo.html.
set -euo pipefail
cd "$(dirname "$0")/.."
benchmark=".venv/bin/benchmark"
reproductions="${REPRODUCTIONS:-5}"
storage="sqlite:///results/scale-demo.db"
common=(--dataset synthetic --protocol quick --reproductions "$reproductions" --storage "$storage")

"$benchmark" datasets verify synthetic
for loss_and_scale in proxy_anchor:32 soft_triple:20; do
  loss="${loss_and_scale%%:*}" own_scale="${loss_and_scale##*:}"
  "$benchmark" test --loss "$loss" "${common[@]}" --param scale_schedule=constant
  "$benchmark" test --loss "$loss" "${common[@]}" --param scale_schedule=linear --param scale_end=4
  "$benchmark" test --loss "$loss" "${common[@]}" --param scale_schedule=linear --param scale_end="$own_scale"
done
for schedule in switch quadratic; do
  "$benchmark" test --loss proxy_anchor "${common[@]}" --param scale_schedule="$schedule" --param scale_end=4
done
"$benchmark" test --loss proxy_anchor "${common[@]}" --batch-sampler representative --param scale_schedule=constant
"$benchmark" report --storage "$storage" --format md --out results/scale-demo.md
"$benchmark" report --storage "$storage" --out reports/scale-demo.html
echo "open reports/scale-demo.html: section 'Configurations compared' and 'Proxy diagnostics'"

#!/usr/bin/env bash
# Install, then run the whole pipeline on an embedded default: local Spark, local Ray,
# MovieLens-100K from ../shared/data when present, else a generated synthetic log.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
data=../shared/data/ml-100k
if [ ! -f "$data/ml-100k.inter" ]; then
  data=runs/synthetic-data
  [ -d "$data/clicks" ] || .venv/bin/watchnext generate --users 5000 --items 3000 --events 300000 --seed 1 --out "$data"
fi
rm -rf runs/quickstart
# the defaults: no configuration is tuned to this data set
.venv/bin/watchnext run --data "$data" --out runs/quickstart "$@"

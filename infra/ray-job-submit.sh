#!/usr/bin/env bash
# Submit a watchnext command that runs on Ray (train or recall, or a night's train or recall
# step) to a running Ray cluster (e.g. KubeRay) as a Ray job, and wait for it: the exit
# status is the job's.
#
#   RAY_ADDRESS=http://head:8265 infra/ray-job-submit.sh train --run s3://bucket/runs/2026-11-23 --set train.workers=8
#   RAY_ADDRESS=http://head:8265 infra/ray-job-submit.sh nightly --step train --date 2026-11-22 \
#       --data s3://watchnext-logs/clicklog --root s3://watchnext/nightly --set train.workers=8
#
# The job's driver joins the cluster (ray.address=auto); the working directory is uploaded
# and installed on the workers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: infra/ray-job-submit.sh COMMAND [ARGS...]   (e.g. train --run RUN_DIR, nightly --step train ...)" >&2
  exit 2
fi
exec ray job submit \
  --address "${RAY_ADDRESS:?set RAY_ADDRESS to the cluster dashboard, e.g. http://head:8265}" \
  --working-dir "$root" \
  --runtime-env-json '{"pip": ["-e ."]}' \
  -- python -m watchnext "$@" --set ray.address=auto

#!/usr/bin/env bash
# Submit the train or recall stage to a running Ray cluster (e.g. KubeRay) as a Ray job.
#
#   RAY_ADDRESS=http://head:8265 infra/ray-job-submit.sh train --run s3://bucket/runs/2026-11-23 --set train.workers=8
#
# The job's driver joins the cluster (ray.address=auto); the working directory is uploaded
# and installed on the workers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
stage="$1"; shift
exec ray job submit \
  --address "${RAY_ADDRESS:?set RAY_ADDRESS to the cluster dashboard, e.g. http://head:8265}" \
  --working-dir "$root" \
  --runtime-env-json '{"pip": ["-e ."]}' \
  -- python -m watchnext.cli "$stage" "$@" --set ray.address=auto

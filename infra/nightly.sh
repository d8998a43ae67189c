#!/usr/bin/env bash
# Run one step of night DATE on the cluster, or all of them in order: the same steps as
# `watchnext nightly --step STEP`, each where it fits.
#
#   WATCHNEXT_DATA=s3://watchnext-logs/clicklog WATCHNEXT_ROOT=s3://watchnext/nightly \
#   SPARK_MASTER=k8s://https://api.cluster:6443 RAY_ADDRESS=http://ray-head:8265 \
#     infra/nightly.sh all 2026-11-22
#
#   prep              Spark, through infra/spark-submit.sh (SPARK_MASTER, SPARK_SUBMIT_OPTS_EXTRA)
#   train, recall     Ray jobs on the cluster at RAY_ADDRESS, through infra/ray-job-submit.sh
#   evaluate, publish here: Python over Parquet (pyarrow), with $PYTHON (python3); evaluate's ALS
#                     baseline starts a Spark session of the spark section (local[*] by default)
#
# WATCHNEXT_DATA   DATA_DIR whose clicks/ are partitioned date=YYYY-MM-DD/ (required)
# WATCHNEXT_ROOT   NIGHTLY_ROOT: runs/DATE/, recall/, i2i/ and nightly/DATE.json (required)
# WATCHNEXT_SET    --set overrides for every step, space-separated, e.g. "train.workers=8 recall.actors=4"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# the order of watchnext.nightly.NIGHTLY_STEPS
steps=(prep train recall evaluate publish)

usage() {
  echo "usage: infra/nightly.sh all|$(IFS='|'; echo "${steps[*]}") YYYY-MM-DD" >&2
  exit 2
}

[ $# -eq 2 ] || usage
step="$1"
date="$2"
[[ " all ${steps[*]} " == *" $step "* ]] || usage
[[ "$date" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || usage
: "${WATCHNEXT_DATA:?set WATCHNEXT_DATA to the DATA_DIR of the click log, e.g. s3://watchnext-logs/clicklog}"
: "${WATCHNEXT_ROOT:?set WATCHNEXT_ROOT to the NIGHTLY_ROOT the nights write, e.g. s3://watchnext/nightly}"

overrides=()
read -ra sets <<< "${WATCHNEXT_SET:-}"
for item in "${sets[@]}"; do
  overrides+=(--set "$item")
done

run_step() {
  local args=(nightly --step "$1" --date "$date" --data "$WATCHNEXT_DATA" --root "$WATCHNEXT_ROOT" "${overrides[@]}")
  echo "nightly $date: $1" >&2
  case "$1" in
    prep) "$here/spark-submit.sh" "${args[@]}" ;;
    train | recall) "$here/ray-job-submit.sh" "${args[@]}" ;;
    evaluate | publish) "${PYTHON:-python3}" -m watchnext "${args[@]}" ;;
  esac
}

if [ "$step" = all ]; then
  for one in "${steps[@]}"; do
    run_step "$one"
  done
else
  run_step "$step"
fi

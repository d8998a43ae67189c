#!/usr/bin/env bash
# Run the prep stage under spark-submit (YARN, Kubernetes or standalone): the packages travel
# as a zip with --py-files; the cluster's Python needs the dependencies of pyproject.toml.
#
#   SPARK_MASTER=yarn infra/spark-submit-prep.sh --data s3://bucket/clicks --out s3://bucket/runs/2026-11-23
#
# Extra spark-submit options go in SPARK_SUBMIT_OPTS_EXTRA, e.g. "--num-executors 20".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
(cd "$root" && zip -qr "$build/watchnext.zip" watchnext jobs -x '*__pycache__*')
# shellcheck disable=SC2086
exec "${SPARK_SUBMIT:-spark-submit}" \
  --master "${SPARK_MASTER:-local[*]}" \
  --conf spark.sql.session.timeZone=UTC \
  --py-files "$build/watchnext.zip" \
  ${SPARK_SUBMIT_OPTS_EXTRA:-} \
  "$root/infra/prep_main.py" "$@"

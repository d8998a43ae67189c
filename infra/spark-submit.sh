#!/usr/bin/env bash
# Run a watchnext command under spark-submit (YARN, Kubernetes or standalone): the prep stage
# alone, or a night's prep step. The packages travel as a zip with --py-files; the cluster's
# Python needs the dependencies of pyproject.toml (infra/requirements.txt, or infra/Dockerfile's image).
#
#   SPARK_MASTER=yarn infra/spark-submit.sh prep --data s3://bucket/clicks --out s3://bucket/runs/2026-11-23
#   SPARK_MASTER=k8s://https://api.cluster:6443 infra/spark-submit.sh nightly --step prep --date 2026-11-22 \
#       --data s3://watchnext-logs/clicklog --root s3://watchnext/nightly
#
# Paths: the CLI takes s3:// (pyarrow reads and writes the manifests); Spark maps s3:// to
# Hadoop's S3A (spark.hadoop.fs.s3.impl below), so one URI works for both. S3A needs the
# hadoop-aws jar of pyspark's Hadoop (3.5.0 for pyspark 4.3.0), e.g.
#   SPARK_SUBMIT_OPTS_EXTRA="--packages org.apache.hadoop:hadoop-aws:3.5.0"
# gs:// and hdfs:// need the GCS connector or a Hadoop configuration the same way.
#
# Extra spark-submit options go in SPARK_SUBMIT_OPTS_EXTRA, e.g. "--num-executors 20"; on
# Kubernetes, the executors' image: "--conf spark.kubernetes.container.image=watchnext:0.1.0".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: infra/spark-submit.sh COMMAND [ARGS...]   (e.g. prep --data DATA_DIR --out RUN_DIR)" >&2
  exit 2
fi
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
# prep imports watchnext, core and jobs; ray_train, serving, report and synthetic are imported
# lazily by other commands and travel too, so that any command finds its modules
(cd "$root" && zip -qr "$build/watchnext.zip" core watchnext jobs ray_train serving report synthetic -x '*__pycache__*')
# not exec: the trap removes the zip when spark-submit ends
# shellcheck disable=SC2086
"${SPARK_SUBMIT:-spark-submit}" \
  --master "${SPARK_MASTER:-local[*]}" \
  --conf spark.sql.session.timeZone=UTC \
  --conf spark.hadoop.fs.s3.impl=org.apache.hadoop.fs.s3a.S3AFileSystem \
  --py-files "$build/watchnext.zip" \
  ${SPARK_SUBMIT_OPTS_EXTRA:-} \
  "$root/infra/spark_main.py" "$@"

#!/usr/bin/env bash
# Create .venv and install watchnext with its test tools. Safe to rerun.
# torch is installed first at 2.13.0, the CPU build; the project's pin (<=2.13.0) then keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# the tested versions of the dependencies (the image installs the same: infra/Dockerfile)
.venv/bin/python -m pip install --quiet -e ".[test]" -c infra/requirements.txt
java -version >/dev/null 2>&1 || { echo "Java 17+ is required by Spark: install a JDK (e.g. openjdk-17-jre-headless)" >&2; exit 1; }
echo "watchnext installed in $(pwd)/.venv"

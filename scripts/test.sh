#!/usr/bin/env bash
# Fresh machine -> test results: installs Parc with its dev extras into .venv, runs ruff (lint and the
# format check), starts the local Slurm cluster when running as root (the slurm-marked tests need it), runs the whole suite (the slow end-to-end
# tests included, which a plain `pytest` leaves out), stops the cluster. Arguments go to pytest after ours,
# so `scripts/test.sh -m "not slow"` or `scripts/test.sh -k resume -n 0` narrow it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh dev
started_slurm=0
if [ "$(id -u)" = 0 ] && [ -x scripts/slurm-cluster.sh ]; then
  if eval "$(scripts/slurm-cluster.sh start)"; then started_slurm=1; fi
fi
status=0
# Lint and format first (seconds); a finding fails the run after the tests have still run.
.venv/bin/ruff check src tests benchmarks scripts || status=$?
.venv/bin/ruff format --check src tests benchmarks scripts || status=$?
.venv/bin/python -m pytest -m "slow or not slow" "$@" || status=$?
if [ "$started_slurm" = 1 ]; then scripts/slurm-cluster.sh stop || true; fi
exit "$status"

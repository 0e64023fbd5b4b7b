#!/usr/bin/env bash
# Fresh machine -> trained demo model: installs Parc into .venv, then runs the offline CPU demo
# (Shakespeare, tiny model, ~2 minutes). Extra arguments are Hydra overrides, e.g. arch=mamba seed=1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m parc.train experiment=demo "$@"

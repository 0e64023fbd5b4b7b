#!/usr/bin/env bash
# Creates .venv (if missing) and installs Parc into it: the CPU torch wheel first (a looser torch
# requirement with no torch installed would download a multi-GB CUDA build), then the project.
# Usage: scripts/install.sh [extras]   e.g. scripts/install.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -W ignore -c "import torch" || { echo "installing torch==2.13.0 failed" >&2; exit 1; }
fi
# DS_BUILD_OPS=0: the neox extra's deepspeed (a test tool) installs as pure Python, compiling no CUDA ops
DS_BUILD_OPS=0 .venv/bin/pip install -q -e ".${extras:+[$extras]}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import parc, torch, transformers; print(f'parc {parc.__version__} installed (torch {torch.__version__}, transformers {transformers.__version__})')"

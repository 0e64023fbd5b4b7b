#!/usr/bin/env bash
# The memorization demonstration (README, "Memorization demonstration"; issue 25): mini-Parc with canaries
# (experiment=mini_parc_canaries), one architecture x 3 seeds, an exact block-swap branch of the first seed from
# step 1000 ([1001, 1251) <-> [1751, 2001)), the panel scored at every checkpoint (eval=canaries), then every
# memorization analysis. ~45 minutes on 2 CPU cores for Pythia. Every stage resumes: run it again after a stop.
#   scripts/memorization-demo.sh                 # Pythia, seeds 0 1 2 -> runs/mini_parc_canaries
#   ARCH=mamba SEEDS="0 1 2" scripts/memorization-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/install.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ARCH=${ARCH:-pythia}
SEEDS=${SEEDS:-"0 1 2"}
ROOT=runs/mini_parc_canaries
EVALS=$ROOT/evals-$ARCH
parc() { .venv/bin/python -m "parc.$1" "${@:2}"; }
stamp() { echo "[$(date +%T)] $*"; }

for seed in $SEEDS; do
    stamp "train $ARCH seed $seed"
    parc train experiment=mini_parc_canaries arch="$ARCH" seed="$seed"
done
first=${SEEDS%% *}
stamp "block-swap branch of seed $first from step 1000"
parc train experiment=mini_parc_canaries arch="$ARCH" seed="$first" branch_from=checkpoint-1000 \
    intervention=block_swap "intervention.blocks=[1001,1251,1751,2001]"
stamp "panel at every checkpoint"
runs=$(for seed in $SEEDS; do printf '%s,' "$ROOT/$ARCH-seed$seed-shard0"; done)
runs+="$ROOT/$ARCH-seed$first-shard0-block_swap-from1000"
parc evaluate runs="$runs" eval=canaries eval.panel.per_interval=32 eval.batch_size=64 out="$EVALS"
stamp "analyses"
parc memorization canaries evals="$EVALS"
parc memorization branch evals="$EVALS"
parc memorization profile evals="$EVALS"
parc memorization profile evals="$EVALS" units=canary control=notyet out="$EVALS/memorization-canaries"
parc memorization order evals="$EVALS" block=16
parc memorization predict evals="$EVALS" units=canary
stamp "done: tables and figures in $EVALS/memorization"

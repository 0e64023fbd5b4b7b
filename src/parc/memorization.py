"""`python -m parc.memorization <profile|order|predict|canaries|branch> evals=<dir> key=value ...`: memorization measured causally
and by training order, from the per-unit panel parc.evaluate writes (`<evals>/examples/<evaluation>.parquet`).

    python -m parc.memorization profile evals=runs/mem/evals                  # DiD ATT(g, t), memorisation = -ATT(nll)
    python -m parc.memorization profile evals=runs/mem/evals units=canary evaluation=canaries control=notyet
    python -m parc.memorization order evals=runs/mem/evals block=512          # Pythia's Q-Q + dispersion/trend/KS
    python -m parc.memorization predict evals=runs/mem/evals                  # precision/recall for "memorized at end"
    python -m parc.memorization canaries evals=runs/mem/evals                 # exposure / extraction vs repetitions
    python -m parc.memorization branch evals=runs/mem/evals                   # a branch vs its parent, unit by unit

profile: ATT(g, t) per run (cohort g = the first checkpoint at or after a unit's treat_step; controls the
never-trained units, or also the not-yet-trained: control=notyet), instantaneous / persistent / residual
summaries with bootstrap bands over units (samples=) and over seeds, and the profile correlation across seeds and
architectures. units=train compares training sequences with never-trained controls; units=canary, canaries with
never-inserted references. order: memorized (score32 == 1) training sequences per block of `block` in training
order at the last checkpoint (or step=). predict: every earlier checkpoint, other seed and other architecture
predicting a run's memorized set at its end. canaries: exposure and extraction of each (window, repetition
count) group of canaries over checkpoints against the never-inserted references, seed bands, and the checks of
the memorization demonstration. branch: every branch (branch_from= + intervention=) against its parent evaluated
with it: the difference in differences of the units it moved vs never-trained controls. Tables (parquet) and
figures (PNG + PDF) go to out= (default <evals>/memorization). See parc.study.memorization.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import REQUIRED, Command, Key
from parc.errors import exit_on_error

EVALS = Key("evals", Path, REQUIRED, "the out= directory of parc.evaluate (its panel mode)")
EVALUATION = Key("evaluation", str, "memorization", "which per-unit table: examples/<evaluation>.parquet")
UNITS = Key("units", str, "train", "training sequences vs controls, or canaries vs references", ("train", "canary"))
OUTCOME = Key("outcome", str, "nll", "the per-unit outcome", ("nll", "accuracy", "score32"))
SAMPLES = Key("samples", int, 200, "bootstrap draws over units")
OUT = Key("out", Path, None, "where tables and figures go (default <evals>/memorization)")
CONTROL = Key("control", str, "never", "never-treated or not-yet-treated controls", ("never", "notyet"))
BLOCK, STEP = Key("block", int, 512, "sequences per block"), Key("step", int, None, "checkpoint (default the last)")
STRONG = Key("strong", int, 16, "repetitions from which extraction is checked")
SUBCOMMANDS = {  # name: (keys, the function of parc.study that runs it)
    "profile": ((EVALS, EVALUATION, UNITS, OUTCOME, CONTROL, SAMPLES, OUT), "run_profile"),
    "order": ((EVALS, EVALUATION, BLOCK, STEP, OUT), "run_order"),
    "predict": ((EVALS, EVALUATION, UNITS, OUT), "run_predict"),
    "canaries": ((EVALS, EVALUATION, STRONG, OUT), "run_canaries"),
    "branch": ((EVALS, EVALUATION, OUTCOME, SAMPLES, OUT), "run_branch"),
}
COMMAND = Command(
    "parc.memorization",
    __doc__,
    example="python -m parc.memorization profile evals=runs/mem/evals",
    subcommands=tuple(Command(name, keys=keys) for name, (keys, _) in SUBCOMMANDS.items()),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    import parc.study

    getattr(parc.study, SUBCOMMANDS[args.subcommand][1])(**args.values)


if __name__ == "__main__":
    main()

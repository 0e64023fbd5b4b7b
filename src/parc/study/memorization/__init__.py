"""Memorization analyses (`python -m parc.memorization`) of the per-unit panel parc.evaluate writes:

    panel.py    reading `<evals>/examples/<evaluation>.parquet`, families of units, cohorts
    did.py      difference-in-differences ATT(g, t) (Callaway & Sant'Anna, unconditional) with unit bootstrap
    profile.py  memorisation profiles (Lesci et al.): summaries, seed bands, correlation across seeds and archs
    order.py    Pythia's training-order test: counts per block, Poisson Q-Q, dispersion / trend / KS tests
    predict.py  predictability (Biderman et al.): precision / recall of checkpoints, seeds, archs for the end
    canaries.py canaries vs never-inserted references: exposure and extraction by repetition, window and time
    branch.py   a branch vs its parent, unit by unit: the difference in differences of the units it moved
    figures.py  their figures, through parc.study.plots
    command.py  the subcommands, with typed arguments

Imports only the study root (results, stats, plots) and packages below the study layer.
"""

from parc import lazy_exports

PUBLIC = {
    "run_profile": "command",
    "run_order": "command",
    "run_predict": "command",
    "run_canaries": "command",
    "run_branch": "command",
    "read_panel": "panel",
    "att_gt": "did",
    "profile_tables": "profile",
    "order_tables": "order",
    "predict_table": "predict",
}
__all__ = sorted(PUBLIC)
__getattr__ = lazy_exports(__name__, PUBLIC)

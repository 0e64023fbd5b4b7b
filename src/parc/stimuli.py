"""`python -m parc.stimuli data=demo out=stimuli/demo.stims [train=1000 val=500 test=500] [sample_seed=N]
[shards=0,1] [training overrides]`: build a NaWoCo-style stimulus set from held-out text (parc.study.phases.stimulus_sets).

Takes the overrides the runs were trained with, so `data=` (and the trainer's shard slices) mean the same
as for training; `data=demo` alone means the demo grid (experiment=demo).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from parc.config import compose, own_int, own_ints, split_own_args

from parc.training import validate
from parc.errors import exit_on_error

OWN_ARGS = ("out", "train", "val", "test", "sample_seed", "shards")


def demo_defaults(overrides: List[str]) -> List[str]:
    """`data=demo` without an experiment: the demo grid's trainer settings (the default trainer cannot read it)."""
    named = {arg.partition("=")[0] for arg in overrides}
    return ["experiment=demo", *overrides] if "data=demo" in overrides and "experiment" not in named else overrides


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    from parc.study import DEFAULT_SIZES, PAPER_SEED, build_stimuli

    own, overrides = split_own_args(sys.argv[1:] if argv is None else argv, OWN_ARGS)
    cfg = compose(demo_defaults(overrides))
    validate(cfg)
    sizes = {split: own_int(split, own.get(split, str(size))) for split, size in DEFAULT_SIZES.items()}
    shards = own_ints("shards", own["shards"]) if own.get("shards", "").strip() else []
    out = Path(own.get("out", f"stimuli/{cfg.data.name}.stims"))
    report = build_stimuli(cfg, out, sizes, own_int("sample_seed", own.get("sample_seed", str(PAPER_SEED))), shards)
    print(report.summary, flush=True)


if __name__ == "__main__":
    main()

"""`python -m parc.stimuli data=demo out=stimuli/demo.stims [train=1000 val=500 test=500] [sample_seed=N]
[shards=0,1] [training overrides]`: build a NaWoCo-style stimulus set from held-out text (parc.study.phases.stimulus_sets).

Takes the overrides the runs were trained with, so `data=` (and the trainer's shard slices) mean the same
as for training; `data=demo` alone means the demo grid (experiment=demo).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import INTS, Command, Key
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.stimuli",
    __doc__,
    overrides=True,
    example="python -m parc.stimuli data=demo train=200",
    keys=(
        Key("out", Path, None, "the .stims file to write (default stimuli/<data.name>.stims)"),
        Key("train", int, None, "stimuli in the training split (default 1000)"),
        Key("val", int, None, "stimuli in the validation split (default 500)"),
        Key("test", int, None, "stimuli in the test split (default 500)"),
        Key("sample_seed", int, None, "seed of the sampling (default the paper's)"),
        Key("shards", INTS, None, "leave out the text of these data shards (their runs train on it)"),
    ),
)


def demo_defaults(overrides: List[str]) -> List[str]:
    """`data=demo` without an experiment: the demo grid's trainer settings (the default trainer cannot read it)."""
    named = {arg.partition("=")[0] for arg in overrides}
    return ["experiment=demo", *overrides] if "data=demo" in overrides and "experiment" not in named else overrides


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.config import compose
    from parc.study import DEFAULT_SIZES, PAPER_SEED, build_stimuli
    from parc.training import validate

    cfg = compose(demo_defaults(args.overrides))
    validate(cfg)
    sizes = {
        split: size if getattr(args, split) is None else getattr(args, split) for split, size in DEFAULT_SIZES.items()
    }
    out = args.out or Path(f"stimuli/{cfg.data.name}.stims")
    seed = PAPER_SEED if args.sample_seed is None else args.sample_seed
    print(build_stimuli(cfg, out, sizes, seed, args.shards or []).summary, flush=True)


if __name__ == "__main__":
    main()

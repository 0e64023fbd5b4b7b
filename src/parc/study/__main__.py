"""`python -m parc.study experiment=demo seeds=0-2 [archs=pythia,mamba,rwkv] [steps=...] [out=runs/<run_name>]
[corpus=stream|consumed] [train= val= test=] [training overrides]`: mini-Parc, train the grid, score, count
n-grams, analyse and draw (parc.study.phases.pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import INTS, STRS, Command, Key
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.study",
    __doc__,
    overrides=True,
    example="python -m parc.study experiment=demo seeds=0-2",
    keys=(
        Key("seeds", INTS, [0], "seeds of every architecture, e.g. 0-2 or 0,1,5"),
        Key("archs", STRS, None, "architectures (default pythia,mamba,rwkv)"),
        Key("steps", INTS, None, "checkpoints to analyse (default step 0, powers of two, the final step)"),
        Key("out", Path, None, "the grid's directory (default <paths.output_root>/<run_name>)"),
        Key(
            "corpus",
            str,
            "stream",
            "n-grams from the whole stream but the stimuli's documents, or the batches trained on",
            ("stream", "consumed"),
        ),
        *(
            Key(split, int, None, f"stimuli in the {split} split (as parc.stimuli)")
            for split in ("train", "val", "test")
        ),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.study import run_study

    sizes = {split: getattr(args, split) for split in ("train", "val", "test") if getattr(args, split) is not None}
    run_study(args.overrides, args.seeds, args.archs or None, args.steps, args.out, args.corpus, sizes)


if __name__ == "__main__":
    main()

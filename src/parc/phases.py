"""`python -m parc.phases runs=<runs or grid root> [out=] [stimuli=] [vectors=<fastText .bin or .vec>]`:
correlations, regressions, model agreement and the phase figures from `<out>/surprisal.parquet` and
`<out>/ngrams.parquet` (see parc.study.phases.statistics)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import Command, Key
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.phases",
    __doc__,
    example="python -m parc.phases runs=runs/demo",
    keys=(
        Key("runs", str, None, "runs or a grid root (their analysis is <root>/analysis)"),
        Key("out", Path, None, "the analysis directory (default <root of runs>/analysis)"),
        Key("stimuli", str, None, "the stimulus set scored (when out= holds several)"),
        Key("vectors", Path, None, "fastText vectors (.bin or .vec; default <out>/fasttext.bin)"),
    ),
    deprecated={"phases.vectors": "vectors"},
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.study import run_phases

    run_phases(args.out, args.runs, args.stimuli, args.vectors)


if __name__ == "__main__":
    main()

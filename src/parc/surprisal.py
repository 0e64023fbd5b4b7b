"""`python -m parc.surprisal stimuli=a.stims[,b.stims] runs=<runs> [steps=10,20,40] [out=<dir>]
[batch_tokens=8192] [device=auto|cpu|cuda]`: per-word surprisal at every checkpoint, batched, with the
paper's conventions (parc.study.phases.surprisal); writes the paper's TSVs and surprisal.parquet under `out=`
(default `<root of the first run>/analysis`). Reruns skip what is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import INTS, REQUIRED, Command, Key
from parc.errors import ParcError, exit_on_error

COMMAND = Command(
    "parc.surprisal",
    __doc__,
    example="python -m parc.surprisal stimuli=stimuli/demo.stims runs=runs/demo",
    keys=(
        Key("stimuli", str, REQUIRED, "stimulus sets, comma-separated (.stims or the paper's TSV)"),
        Key("runs", str, REQUIRED, "run dirs, grid roots or hub:<org/name>[@<revision>], comma-separated"),
        Key("steps", INTS, None, "checkpoints to score (default every one)", example="10,20,40"),
        Key("out", Path, None, "where the tables go (default <root of the first run>/analysis)"),
        Key("batch_tokens", int, 8192, "tokens per forward pass"),
        Key("device", str, "auto", "where to run", ("auto", "cpu", "cuda")),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    if args.batch_tokens < 1:
        raise ParcError("batch_tokens= must be one positive integer (tokens per forward pass)")
    from parc.study import run_surprisal

    paths = run_surprisal(args.stimuli, args.runs, args.steps, args.out, args.batch_tokens, args.device)
    print(f"wrote {paths[0]} and {paths[1]}", flush=True)


if __name__ == "__main__":
    main()

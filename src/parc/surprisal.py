"""`python -m parc.surprisal stimuli=a.stims[,b.stims] runs=<runs> [steps=10,20,40] [out=<dir>]
[batch_tokens=8192] [device=auto|cpu|cuda]`: per-word surprisal at every checkpoint, batched, with the
paper's conventions (parc.study.phases.surprisal); writes the paper's TSVs and surprisal.parquet under `out=`
(default `<root of the first run>/analysis`). Reruns skip what is done.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from parc.config import own_ints, split_own_args
from parc.errors import ParcError, exit_on_error

OWN_ARGS = ("stimuli", "runs", "steps", "out", "batch_tokens", "device")


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    own, rest = split_own_args(sys.argv[1:] if argv is None else argv, OWN_ARGS)
    if rest:
        raise ParcError(f"unknown argument {rest[0]!r}: parc.surprisal takes {', '.join(a + '=' for a in OWN_ARGS)}")
    for required in ("stimuli", "runs"):
        if not own.get(required):
            raise ParcError(f"{required}= is required, e.g. python -m parc.surprisal stimuli=stimuli/demo.stims "
                            "runs=runs/demo")
    from parc.study import run_surprisal

    steps = own_ints("steps", own["steps"], example="10,20,40") if own.get("steps") else None
    budget = own_ints("batch_tokens", own.get("batch_tokens", "8192"), example="8192")
    if len(budget) != 1 or budget[0] < 1:
        raise ParcError("batch_tokens= must be one positive integer (tokens per forward pass)")
    device = own.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise ParcError(f"device={device!r} is not one of auto, cpu, cuda")
    paths = run_surprisal(own["stimuli"], own["runs"], steps, Path(own["out"]) if own.get("out") else None,
                          budget[0], device)
    print(f"wrote {paths[0]} and {paths[1]}", flush=True)


if __name__ == "__main__":
    main()

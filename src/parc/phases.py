"""`python -m parc.phases runs=<runs or grid root> [out=] [stimuli=] [phases.vectors=<fastText .bin or .vec>]`:
correlations, regressions, model agreement and the phase figures from `<out>/surprisal.parquet` and
`<out>/ngrams.parquet` (see parc.study.phases.statistics)."""

from __future__ import annotations

import sys
from typing import List, Optional

from parc.errors import ParcError, exit_on_error

OWN_ARGS = ("runs", "out", "stimuli", "phases.vectors")


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    from parc.config import split_own_args
    from parc.study import run_phases

    own, unknown = split_own_args(sys.argv[1:] if argv is None else argv, OWN_ARGS)
    if unknown:
        raise ParcError(f"unknown argument {unknown[0]!r}: parc.phases takes {', '.join(k + '=' for k in OWN_ARGS)}")
    run_phases(own)


if __name__ == "__main__":
    main()

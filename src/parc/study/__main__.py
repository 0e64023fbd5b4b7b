"""`python -m parc.study experiment=demo seeds=0,1,2 [archs=...] [steps=...] [out=runs/<run_name>]`: mini-Parc,
train the grid, score, count n-grams, analyse and draw (parc.study.phases.pipeline)."""

from __future__ import annotations

import sys
from typing import List, Optional

from parc.errors import exit_on_error


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    from parc.study.phases.pipeline import run_study

    run_study(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()

"""`python -m parc.prepare [data=...] [prepare.part=i prepare.num_parts=n]`: tokenize and pack a dataset once.

Takes the same overrides as `python -m parc.train`, so the data it writes is exactly what that run reads.
"""

from __future__ import annotations

from typing import List, Optional

from parc.cli import Command
from parc.config import compose
from parc.data import prepare_data
from parc.errors import exit_on_error
from parc.training import validate

COMMAND = Command("parc.prepare", __doc__, overrides=True, example="python -m parc.prepare data=demo")


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    cfg = compose(COMMAND.parse(argv).overrides)
    validate(cfg)
    print(prepare_data(cfg).summary, flush=True)


if __name__ == "__main__":
    main()

"""`python -m parc.prepare [data=...] [prepare.part=i prepare.num_parts=n]`: tokenize and pack a dataset once.

Takes the same overrides as `python -m parc.train`, so the data it writes is exactly what that run reads.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from parc.config import compose

from parc.data import prepare_data
from parc.training import validate
from parc.errors import exit_on_error


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    cfg = compose(sys.argv[1:] if argv is None else argv)
    validate(cfg)
    print(prepare_data(cfg).summary, flush=True)


if __name__ == "__main__":
    main()

"""`python -m parc.card <run output_dir> [out=<dir>] [evals=<dir>]`: write a run's model card to review.

    python -m parc.card runs/parc/pythia-seed0-shard0                  # README.md + loss_curve.png in the run dir
    python -m parc.card runs/parc/pythia-seed0-shard0 out=card/        # ... somewhere else
    python -m parc.card runs/parc/pythia-seed0-shard0 evals=runs/evals # parc.evaluate's out= (default <run>/../evals)

The card is the one a publishing run pushes with its final `main` commit and `python -m parc.sync <output_dir>`
refreshes: huggingface_hub's ModelCard (license, datasets, language, base model, tags, model-index results),
the suite and how its runs differ, exact parameter counts, training data and procedure, the checkpoints with a
quickstart, evaluations, the loss curve, citation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from parc.errors import ParcError, exit_on_error

OWN = ("out", "evals")


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {__doc__}")
        return
    from parc.config import split_own_args

    own, rest = split_own_args(argv, OWN)
    if len(rest) != 1 or "=" in rest[0]:
        raise ParcError(f"give one run directory and optionally out=<dir> evals=<dir>, not {' '.join(rest) or 'nothing'}"
                        "; e.g. python -m parc.card runs/parc/pythia-seed0-shard0")
    from parc.hub import write_card

    write_card(Path(rest[0]), Path(own["out"]) if own.get("out") else None,
               Path(own["evals"]) if own.get("evals") else None)


if __name__ == "__main__":
    main()

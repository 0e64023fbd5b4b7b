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

from pathlib import Path
from typing import List, Optional

from parc.cli import Command, Key, Paths
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.card",
    __doc__,
    paths=Paths("run output_dir"),
    example="python -m parc.card runs/parc/pythia-seed0-shard0",
    keys=(
        Key("out", Path, None, "where README.md and loss_curve.png go (default the run directory)"),
        Key("evals", Path, None, "parc.evaluate's out= (default <run>/../evals)"),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.hub import write_card

    write_card(args.paths[0], args.out, args.evals)


if __name__ == "__main__":
    main()

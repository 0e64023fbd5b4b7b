"""`python -m parc.ngrams stimuli=<set> [runs=...] [corpus=consumed|stream] [upto_step=N] [out=] [index=]
[word_end=true] [vectors=false] <data overrides>`: word n-gram (1..5, stupid backoff) log-probabilities of
every stimulus target from the training data (corpus=stream: the whole stream but the stimuli's documents),
their coverage, and with vectors=true fastText vectors of the same text for parc.phases.

See parc.study.phases.ngrams for what is counted and parc.study.phases.ngram_index for the index."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import REQUIRED, Command, Key
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.ngrams",
    __doc__,
    overrides=True,
    example="python -m parc.ngrams stimuli=stimuli/demo.stims runs=runs/demo",
    keys=(
        Key("stimuli", str, REQUIRED, "one stimulus set (.stims or the paper's TSV)"),
        Key("runs", str, None, "count the data these runs trained on (run dirs or a grid root, comma-separated)"),
        Key(
            "corpus",
            str,
            None,
            "consumed: the runs' training batches (default with runs=); stream: the whole "
            "stream but the stimuli's documents",
            ("consumed", "stream"),
        ),
        Key("upto_step", int, None, "with corpus=consumed: the batches of steps 1..N (default the last step)"),
        Key("out", Path, None, "where ngrams.parquet goes (default <root of the first run>/analysis)"),
        Key("index", Path, None, "an n-gram index built before"),
        Key("word_end", bool, True, "count only n-grams that end at a word boundary"),
        Key("vectors", bool, False, "also train fastText vectors on the counted text (for parc.phases)"),
    ),
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.study import run_ngrams

    run_ngrams(
        args.stimuli,
        args.overrides,
        args.runs,
        args.out,
        args.index,
        args.upto_step,
        args.word_end,
        args.corpus,
        args.vectors,
    )


if __name__ == "__main__":
    main()

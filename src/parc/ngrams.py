"""`python -m parc.ngrams stimuli=<set> [runs=...] [corpus=consumed|stream] [upto_step=N] [out=] [index=]
[word_end=true] [vectors=false] <data overrides>`: word n-gram (1..5, stupid backoff) log-probabilities of
every stimulus target from the training data (corpus=stream: the whole stream but the stimuli's documents),
their coverage, and with vectors=true fastText vectors of the same text for parc.phases.

See parc.study.phases.ngrams for what is counted and parc.study.phases.ngram_index for the index."""

from __future__ import annotations

import sys
from typing import List, Optional

from parc.errors import exit_on_error


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    from parc.study import run_ngrams

    run_ngrams(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()

"""Word n-gram log-probabilities of stimulus targets by stupid backoff over exact training-data counts.

As the Parc paper's get_ngrams.py (alpha = 0.4, not normalised, natural logs): the order-n estimate of the
target w_i after b back-offs, at the first order m = n - b > 1 whose n-gram w_{i-m+1..i} has a non-zero count, is

    log(alpha^b) + log c(w_{i-m+1..i}) - log c(w_{i-m+1..i-1})

and, when no order above 1 has a count, `log(alpha^(n-1)) + log max(c(w_i), 1) - log N` (N: tokens indexed).
n is capped by the number of words available (context + target). A sequence of words is counted as its
token ids: each word tokenized with its leading space, as the run's tokenizer tokenizes it inside a
sentence, and counted only where it ends at a word boundary (`NgramIndex.count`, word_end).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Dict, List, Sequence, Tuple

ALPHA = 0.4
ORDERS = (1, 2, 3, 4, 5)


class WordCounter:
    """Counts of word sequences in an index, each word tokenized once (with its leading space)."""

    def __init__(self, index, tokenizer, word_end: bool = True):
        self.index, self.word_end = index, word_end
        self._ids: Dict[str, Tuple[int, ...]] = {}
        self.tokenizer = tokenizer
        self.count = lru_cache(maxsize=1 << 20)(self._count)  # n-gram contexts repeat across stimuli and orders

    def word_ids(self, word: str) -> Tuple[int, ...]:
        if word not in self._ids:
            self._ids[word] = tuple(self.tokenizer.encode(" " + word, add_special_tokens=False))
        return self._ids[word]

    def _count(self, words: Tuple[str, ...]) -> int:
        ids = [i for word in words for i in self.word_ids(word)]
        return self.index.count(ids, word_end=self.word_end)


def backoff_logprob(
    words: Sequence[str], order: int, count: Callable[[Tuple[str, ...]], int], total: int, alpha: float = ALPHA
) -> float:
    """Stupid-backoff log-probability (nats) of words[-1] given up to order-1 preceding words."""
    n = min(order, len(words))
    words = tuple(words)
    for m in range(n, 1, -1):
        joint = count(words[-m:])
        if joint > 0:
            return (n - m) * math.log(alpha) + math.log(joint) - math.log(count(words[-m:-1]))
    return (n - 1) * math.log(alpha) + math.log(max(count(words[-1:]), 1)) - math.log(total)


def ngram_rows(stimuli: Sequence[Tuple[int, List[str]]], counter: WordCounter, orders=ORDERS) -> List[dict]:
    """(stimulus_id, order, logprob) for every stimulus (id, words ending with the target) and order."""
    return [
        {
            "stimulus_id": sid,
            "order": order,
            "logprob": backoff_logprob(words, order, counter.count, counter.index.num_tokens),
        }
        for sid, words in stimuli
        for order in orders
    ]

"""The original Parc training script's data pipeline, used as the baseline by B2 (resume) and B3 (prepare).

The script (`train_models/train_model.py`, see shared/notes/parc-recipe.md) streams OpenWebText and maps
this `tokenize` over it in batches: each document cut into 1024-token pieces by the tokenizer's overflow,
only full pieces kept. Here the stream is generated in memory from the demo corpus instead of read from
the Hub, which only makes the baseline faster than the original (no download, no parquet decoding).
Its TrainingArguments are `parc.training.parity.reference_arguments`.
"""

from __future__ import annotations

from typing import Callable, List

CONTEXT_LENGTH = 1024  # the script's context_length


def tokenize_function(tokenizer, context_length: int = CONTEXT_LENGTH) -> Callable[[dict], dict]:
    """The script's `tokenize`, verbatim apart from the names it closed over."""

    def tokenize(element):
        outputs = tokenizer(
            element["text"],
            truncation=True,
            max_length=context_length,
            return_overflowing_tokens=True,
            return_length=True,
        )
        input_batch = []
        for length, input_ids in zip(outputs["length"], outputs["input_ids"]):
            if length == context_length:
                input_batch.append(input_ids)
        return {"input_ids": input_batch}

    return tokenize


def streamed_documents(documents: List[str], count: int):
    """A streamed `datasets.IterableDataset` of `count` {"text": ...} documents, cycling through `documents`."""
    from datasets import IterableDataset

    def generate():
        for i in range(count):
            yield {"text": documents[i % len(documents)]}

    return IterableDataset.from_generator(generate)


def tokenized_stream(documents: List[str], count: int, tokenizer, context_length: int = CONTEXT_LENGTH):
    """The script's `ds_train.map(tokenize, batched=True, remove_columns=ds_train.column_names)`."""
    stream = streamed_documents(documents, count)
    return stream.map(tokenize_function(tokenizer, context_length), batched=True, remove_columns=["text"])

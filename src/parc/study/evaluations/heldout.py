"""Held-out loss: mean token loss, perplexity and bits per byte on packed sequences no evaluated run trained on.

The slice is fixed once for the whole invocation, so every run sees the same sequences: by default the
`eval.heldout.sequences` sequences right after the highest training shard in use (shard k of a run covers
stream indices [k * B * S, (k + 1) * B * S) for global batch B and max_steps S), in the runs' own prepared
stream; or any prepared stream (`eval.heldout.data_dir=`), from `eval.heldout.start`. A slice that overlaps
the training slice of any evaluated run on the same stream is refused. Every next-token prediction of each
sequence counts (the first token is only context). Bits per byte divide the summed loss (nats / ln 2) by the
UTF-8 bytes of the predicted tokens' text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from parc.data.location import STREAM_RECORD, check_same_stream, recorded_stream_dir
from parc.data.stream import FORMAT, PackedStream, read_manifest
from parc.data.tokenizer import tokenizer_sha256
from parc.errors import ParcError
from parc.store.checkpoint import complete_checkpoints, read_trainer_state
from parc.study.evaluations import EvalResult, Evaluation, register
from parc.study.sources.runs import CheckpointRef, run_config, tokenizer_dir


def training_stream_hash(ref: CheckpointRef) -> Optional[str]:
    """content_sha256 of the stream the run trained on, from a trainer state it kept (local runs)."""
    if ref.is_hub or ref.is_neox:
        return None
    for checkpoint in reversed(complete_checkpoints(ref.source)):
        state = read_trainer_state(checkpoint)
        if state is not None:
            return ((state.get("identity") or {}).get("data") or {}).get("stream")
    return None


def training_slice(config: dict) -> Tuple[int, int]:
    """[first, end) stream indices of the run's shard (what parc.data.stream.BatchPlan reads from)."""
    per_shard = int(config["trainer"]["global_batch_size"]) * int(config["trainer"]["max_steps"])
    shard = int(config["data"]["shard"])
    return shard * per_shard, (shard + 1) * per_shard


def find_stream_dir(refs, configs: Dict[str, dict]) -> Path:
    """The runs' prepared stream: where the first local run recorded it (parc.data.location), else, when that
    path is gone, `<ancestor>/data/<data.dir name>` beside it (as parc.train lays out paths.root/data and
    paths.root/runs), refused when its fingerprint differs from the recorded one."""
    for ref in refs:
        config = configs.get(ref.source)
        if ref.is_hub or not config:
            continue
        recorded = recorded_stream_dir(ref.source)
        if recorded is not None:
            return recorded
        name = Path(config["data"]["dir"]).name
        for ancestor in Path(ref.source).parents:
            for candidate in (ancestor / "data" / name, ancestor / name):
                if (candidate / "manifest.json").is_file():
                    check_same_stream(ref.source, candidate)
                    return candidate
        raise ParcError(
            f"cannot find the stream {ref.run} trained on (data.dir={name}): it is not where "
            f"{ref.source}/{STREAM_RECORD} says, nor beside the runs; pass "
            f"eval.heldout.data_dir=<prepared data dir>"
        )
    raise ParcError(
        "held-out loss needs a prepared stream and none of the runs says which: pass "
        "eval.heldout.data_dir=<prepared data dir> (python -m parc.prepare)"
    )


def open_prepared(directory: Path) -> PackedStream:
    manifest = read_manifest(directory)
    if manifest is None or manifest.get("format") != FORMAT:
        raise ParcError(
            f"eval.heldout.data_dir={directory} holds no prepared stream (manifest.json of "
            f"{FORMAT}): prepare one with python -m parc.prepare"
        )
    return PackedStream(directory, manifest)


@register("heldout")
class HeldoutLoss(Evaluation):
    def __init__(self, eval_cfg, refs):
        super().__init__(eval_cfg, refs)
        cfg = eval_cfg.heldout
        configs = {ref.source: run_config(ref) for ref in {r.source: r for r in refs}.values()}
        directory = Path(cfg.data_dir) if cfg.data_dir else find_stream_dir(refs, configs)
        self.stream = open_prepared(directory)
        self.batch_size = int(eval_cfg.batch_size)
        trained = self.training_slices(refs, configs)
        start = cfg.start if cfg.start is not None else max((end for _, end in trained.values()), default=0)
        end = start + int(cfg.sequences)
        if end > len(self.stream):
            raise ParcError(
                f"held-out slice [{start}, {end}) runs past the {len(self.stream)} sequences of "
                f"{self.stream.dir}: lower eval.heldout.sequences, or prepare more data (the runs "
                f"train on the first {start})"
            )
        for run, (first, last) in sorted(trained.items()):
            if start < last and first < end:
                raise ParcError(
                    f"held-out slice [{start}, {end}) of {self.stream.dir} overlaps the training data of "
                    f"{run} ([{first}, {last})): choose eval.heldout.start={last} or later, or another "
                    f"eval.heldout.data_dir"
                )
        self.indices = np.arange(start, end, dtype=np.int64)
        self.tokenizer_hash = tokenizer_sha256(self.stream.tokenizer_dir)
        for ref in refs:
            if not ref.is_hub:
                self.check_tokenizer(tokenizer_dir(ref), ref)
        self.bytes = self.byte_counts()

    def training_slices(self, refs, configs: Dict[str, dict]) -> Dict[str, Tuple[int, int]]:
        """run -> its training slice, for every run that trained on this stream."""
        slices = {}
        for ref in {r.source: r for r in refs}.values():
            config = configs.get(ref.source)
            if not config:
                continue  # a foreign model: its training data is unknown to us
            trained_hash = training_stream_hash(ref)
            same = (
                trained_hash == self.stream.content_hash
                if trained_hash is not None
                else Path(config["data"]["dir"]).name == self.stream.dir.name
            )
            if same:
                slices[ref.run] = training_slice(config)
        return slices

    def check_tokenizer(self, directory: Path, ref: CheckpointRef) -> None:
        if not (Path(directory) / "tokenizer.json").is_file() or tokenizer_sha256(directory) != self.tokenizer_hash:
            raise ParcError(
                f"{ref.source}@{ref.revision} does not use the tokenizer of {self.stream.dir}: held-out "
                f"loss needs the stream prepared with its tokenizer (eval.heldout.data_dir=)"
            )

    def byte_counts(self) -> np.ndarray:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.stream.tokenizer_dir)
        ids = self.stream.sequences(self.indices)
        return np.array([len(tokenizer.decode(row[1:].tolist()).encode("utf-8")) for row in ids], dtype=np.int64)

    def tasks(self) -> List[str]:
        return [self.stream.dir.name]

    def fingerprint(self) -> dict:
        return {"stream": self.stream.content_hash, "first": int(self.indices[0]), "sequences": len(self.indices)}

    @torch.no_grad()
    def sequence_losses(self, model) -> np.ndarray:
        """Summed next-token loss (nats) of every held-out sequence, in float64."""
        sums = []
        for begin in range(0, len(self.indices), self.batch_size):
            ids = torch.from_numpy(self.stream.sequences(self.indices[begin : begin + self.batch_size]))
            # use_cache=False: with a cache Mamba leaves Parc's fast path for transformers' sequential scan
            logits = model(input_ids=ids, use_cache=False).logits.float()
            losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
            sums.append(losses.double().sum(dim=1).numpy())
        return np.concatenate(sums)

    def run(self, loaded) -> EvalResult:
        import pandas as pd

        if loaded.ref.is_hub:
            self.check_tokenizer(loaded.directory, loaded.ref)
        if self.stream.seq_len > loaded.max_length:
            raise ParcError(
                f"held-out sequences have {self.stream.seq_len} tokens, more than {loaded.ref.run}'s "
                f"context of {loaded.max_length}"
            )
        sums = self.sequence_losses(loaded.model)
        predicted = self.stream.seq_len - 1
        per_sequence = sums / predicted
        tokens = predicted * len(sums)
        mean = float(sums.sum() / tokens)
        stderr = float(per_sequence.std(ddof=1) / math.sqrt(len(sums))) if len(sums) > 1 else float("nan")
        task, n = self.tasks()[0], len(sums)
        rows = [
            {"task": task, "metric": "loss", "value": mean, "stderr": stderr, "n": n},
            {"task": task, "metric": "perplexity", "value": math.exp(mean), "stderr": math.exp(mean) * stderr, "n": n},
            {
                "task": task,
                "metric": "bits_per_byte",
                "value": float(sums.sum() / (math.log(2) * self.bytes.sum())),
                "stderr": float("nan"),
                "n": n,
            },
        ]
        examples = pd.DataFrame(
            {
                "example_id": self.indices,
                "task": task,
                "loss": per_sequence,
                "predicted_tokens": predicted,
                "bytes": self.bytes,
            }
        )
        return EvalResult(
            rows,
            examples,
            summary=f"held-out loss {mean:.4f} (ppl {math.exp(mean):.2f}, {rows[2]['value']:.4f} bits/byte)",
        )

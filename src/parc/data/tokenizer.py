"""The tokenizer of a prepared stream: load it from the Hub or train a ByteLevel BPE, then save it beside the data.

Whatever `data.tokenizer` names, the tokenizer actually used is saved with `save_pretrained` in
`<data.dir>/tokenizer/`, so training (and `python -m parc.batch decode=true`) never needs the network.
`train-bpe` trains a ByteLevel BPE (as GPT-2/Pythia use) from the whole corpus, in document order; the
`tokenizers` trainer is deterministic, so every part of a Slurm array that trains it gets the same bytes.
Like Pythia, `<|endoftext|>` is id 0 and serves as bos, eos, pad and unk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable, Optional

from parc.data.files import private_tmp_dir, publish_dir, remove_dead_tmp_dirs
from parc.errors import ParcError

TRAIN_BPE = "train-bpe"
ENDOFTEXT = "<|endoftext|>"
SPEC_FILE = "parc_tokenizer.json"  # what was asked for (name, trained vocab), saved inside tokenizer/


def tokenizer_spec(data_cfg) -> dict:
    """The request that identifies a tokenizer: its name, plus the vocab size asked of a trained BPE."""
    trained = data_cfg.tokenizer == TRAIN_BPE
    return {"name": data_cfg.tokenizer, "train_vocab_size": data_cfg.tokenizer_vocab_size if trained else None}


def tokenizer_sha256(tokenizer_dir: Path) -> str:
    """Hash of `tokenizer.json`, the file that fully defines a fast tokenizer's ids."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        raise ParcError(
            f"{tokenizer_dir} holds no tokenizer.json: delete {Path(tokenizer_dir).parent} and prepare again"
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_bpe(texts: Iterable[str], vocab_size: int, length: Optional[int] = None):
    """A ByteLevel BPE trained on `texts` in order, wrapped as a transformers fast tokenizer (ids as Pythia's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size <= 257:  # 256 byte symbols + <|endoftext|> are always in the vocabulary
        raise ParcError(f"data.tokenizer_vocab_size={vocab_size} is too small for a ByteLevel BPE: use at least 258")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT],  # first special token -> id 0, as in the Pythia tokenizer
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable, whatever the corpus
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer, length=length)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, pad_token=ENDOFTEXT, unk_token=ENDOFTEXT
    )


def load_saved_tokenizer(tokenizer_dir: Path):
    """The tokenizer saved beside prepared data; never touches the network."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)


def _fetch_pretrained(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ParcError(
            f"cannot load tokenizer {name!r} ({' '.join(str(exc).split())[:160]}): "
            "prepare once with network access, or set data.tokenizer to a local tokenizer directory"
        ) from None


def obtain_tokenizer(
    data_cfg, data_dir: Path, corpus: Callable[[], Iterable[str]], corpus_length: Optional[int] = None
):
    """Load `<data_dir>/tokenizer`, or build it (Hub or train-bpe on `corpus()`) and publish it atomically.

    Returns the tokenizer. Refuses a saved tokenizer built from a different request, and a tokenizer whose
    length differs from `data.vocab_size` (the model's embedding size is derived from it).
    """
    final = Path(data_dir) / "tokenizer"
    wanted = tokenizer_spec(data_cfg)
    if not final.is_dir():
        tokenizer = (
            train_bpe(corpus(), data_cfg.tokenizer_vocab_size, corpus_length)
            if data_cfg.tokenizer == TRAIN_BPE
            else _fetch_pretrained(data_cfg.tokenizer)
        )
        _check_length(tokenizer, data_cfg)  # before anything is written
        # Saved under a private name, then renamed: a directory named tokenizer/ is always complete. If
        # another part published it first, the trainer is deterministic, so theirs is ours.
        remove_dead_tmp_dirs(final)
        tmp = private_tmp_dir(final)
        tokenizer.save_pretrained(str(tmp))
        (tmp / SPEC_FILE).write_text(json.dumps(wanted, indent=1) + "\n")
        publish_dir(tmp, final)
    spec_path = final / SPEC_FILE
    saved = json.loads(spec_path.read_text()) if spec_path.is_file() else None
    if saved != wanted:
        raise ParcError(
            f"{final} holds tokenizer {saved} but this run asks for {wanted}: "
            f"prepare into another data.dir, or delete {data_dir} to start over"
        )
    tokenizer = load_saved_tokenizer(final)
    _check_length(tokenizer, data_cfg)
    return tokenizer


def _check_length(tokenizer, data_cfg) -> None:
    if len(tokenizer) != data_cfg.vocab_size:
        raise ParcError(
            f"tokenizer {data_cfg.tokenizer!r} has {len(tokenizer)} tokens but data.vocab_size="
            f"{data_cfg.vocab_size}: set data.vocab_size={len(tokenizer)}"
        )

"""`runs=neox:<dir>`: raw GPT-NeoX checkpoints (EleutherAI's `neox-ckpt-pythia-*` files) as CheckpointRefs, weights
only, so parc.evaluate and the study layer audit them like any checkpoint.

A `global_stepN` directory is one checkpoint; a save directory is one per `global_step*` tag under it (step = N,
NeoX's iteration). Both give refs with source `neox:<absolute save dir>` and revision `global_stepN`, so a tag named
alone and the same tag found in its save dir are one checkpoint. The weights are the fp32 masters read by
parc.store.neox_raw (every fp16 layer tensor checked against its master) in the GPTNeoXForCausalLM that
`parc.export hf` writes (parc.hub.neoxhf: its config from the checkpoint's `args`). A raw checkpoint holds no
tokenizer: its `tokenizer.json` is looked for in the tag, then in the save dir (put Pythia's there). The ref's
commit is a digest of the tag's file names, sizes and modification times: hashing hundreds of GB of optimizer
files to name the weights would cost more than reading them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import List, Optional

from parc.errors import ParcError
from parc.store import neox_raw
from parc.study.sources.refs import NEOX_PREFIX, CheckpointRef, make_ref, parse_name

MODEL_TYPE = "gpt_neox"


def files_digest(tag: Path) -> str:
    """What the tag's files are, cheaply: sha256 over (name, size, mtime) of each."""
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(tag.iterdir()) if p.is_file()]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def neox_refs(spec: str, pattern: Optional[str]) -> List[CheckpointRef]:
    """`neox:<global_stepN dir | save dir>` -> one ref per tag, by iteration."""
    where = spec[len(NEOX_PREFIX) :]
    if where.startswith("hub:") or not where:
        raise ParcError(
            f"runs={spec}: give a local raw checkpoint, neox:<global_stepN dir or save dir> (fetch a Hub branch "
            f"first, e.g. with huggingface-cli download --revision)"
        )
    if not Path(where).is_dir():
        raise ParcError(f"runs={spec}: no such directory; give a global_stepN directory or its save directory")
    refs = []
    for tag in neox_raw.tags(Path(where)):
        tag = tag.resolve()
        refs.append(
            make_ref(
                {},
                parse_name(f"{tag.parent.name}@{tag.name}", pattern),
                MODEL_TYPE,
                neox_raw.tag_iteration(tag),
                None,
                f"{NEOX_PREFIX}{tag.parent}",
                tag.name,
                files_digest(tag),
                tag.parent.name,
            )
        )
    return refs


def tokenizer_dir(ref: CheckpointRef) -> Path:
    """Where the raw checkpoint's tokenizer is: its tag, else its save dir (a one-line error when neither has one)."""
    tag = ref.local_dir
    for directory in (tag, tag.parent):
        if (directory / "tokenizer.json").is_file():
            return directory
    raise ParcError(
        f"{ref.source}@{ref.revision}: a raw GPT-NeoX checkpoint holds no tokenizer; put its tokenizer.json "
        f"(Pythia's: that of any EleutherAI/pythia-* model) in {tag.parent}"
    )

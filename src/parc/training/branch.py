"""`branch_from=<checkpoint-k | <run dir>/checkpoint-k | hub:org/name@rev | neox:<dir> | neox:hub:org/name@rev>`:
an exact branch at step k.

The new run continues the parent's training state (weights, optimizer, LR scheduler, RNG, step and token
counters) in its own output_dir, under the data plan of this config, which may differ from the parent's only
after step k (`intervention=`, see parc.data.edits). The parent is untouched: it is the control. A bare
`checkpoint-k` is the checkpoint of this config's own output_dir, and the branch then goes to
`<output_dir>-<intervention>-from<k>`; otherwise output_dir is the branch's and must not be the parent's. A raw
GPT-NeoX checkpoint (`neox:`, e.g. a Pythia branch) is continued exactly as `resume=neox:` continues it; its
branch needs an output_dir= of its own (not the config's default cell directory, not the raw checkpoint's), and
as it holds no Parc data fingerprint the batches before k are not checked (a `note:` line says so).

Resuming a run and branching one load through ONE notion, parc.training.source's `StateSource` (`Trainer._restore`):
here the branch's source is found and verified (a Parc checkpoint directory, local or a Hub revision downloaded
into `<output_dir>/branch_from/`; or a raw GPT-NeoX checkpoint, parc.training.neox_source.NeoxSource) and its step
becomes intervention.step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from parc.errors import ParcError
from parc.hub.reader import is_hub_spec
from parc.store import checkpoint
from parc.training import initfrom
from parc.training.source import StateSource

DOWNLOAD_DIR = "branch_from"  # under output_dir; never named checkpoint-*, so never taken for the run's own
NEOX = "neox:"  # a raw GPT-NeoX checkpoint (parc.training.neox_source)


def settle(cfg) -> None:
    """Before anything reads output_dir: a bare `branch_from=checkpoint-k` names this config's own output_dir's
    checkpoint, and the branch is written to `<output_dir>-<intervention>-from<k>`. Checks the combination."""
    text = cfg.get("branch_from")
    if text is None:
        return
    if cfg.init_from is not None:
        raise ParcError(
            "branch_from= continues a checkpoint's full training state, init_from= takes only weights: pass one of them"
        )
    if cfg.resume not in ("auto", "none"):
        raise ParcError(
            f"branch_from= starts a new run, resume={cfg.resume} continues an existing one: pass one of them"
        )
    if text.startswith(NEOX):
        from parc.training import neox_source

        # a bad spec, or a directory that is not a raw checkpoint, is refused by parse
        check_own_dir(cfg, text, neox_source.parse(text))
    elif is_hub_spec(text):
        initfrom.parse_hub(text, key="branch_from")
    elif "/" not in text:
        step = checkpoint.step_of(Path(text))
        if step is None:
            raise ParcError(
                f"branch_from={text!r}: write checkpoint-<k>, <run dir>/checkpoint-<k>, hub:<org/name>@<revision> "
                "or neox:<raw GPT-NeoX checkpoint dir>"
            )
        parent = Path(cfg.output_dir)
        cfg.branch_from = str(parent / text)
        cfg.output_dir = f"{parent}-{cfg.intervention.name if cfg.intervention.name != 'none' else 'branch'}-from{step}"


def resolve(cfg, output_dir: Path, download: bool = True) -> Optional[StateSource]:
    """The verified source of `cfg.branch_from`, or None when there is none or the branch continues from its own
    checkpoints (resume=auto). With download=False (the checks before any write) a Hub source is only parsed."""
    text = cfg.get("branch_from")
    if text is None:
        return None
    if text.startswith(NEOX):
        return _neox_source(cfg, text, Path(output_dir), download)
    if not is_hub_spec(text) and Path(text).resolve().parent == Path(output_dir).resolve():
        raise ParcError(
            f"branch_from={text} is a checkpoint of output_dir {output_dir}: a branch needs a new "
            "directory (pass output_dir=<new dir>, or branch_from=checkpoint-k for the default one)"
        )
    if cfg.resume == "auto" and checkpoint.newest_resumable(output_dir) is not None:
        return None  # the branch continues from its own checkpoints; the source is no longer needed
    if is_hub_spec(text):
        if not download:
            return None
        found = initfrom.from_hub(
            cfg, *initfrom.parse_hub(text, "branch_from"), Path(output_dir), "branch_from", DOWNLOAD_DIR
        )
        return StateSource(found.path, found.record)
    path = Path(text)
    if not (checkpoint.is_complete(path) and checkpoint.has_train_state(path)):
        run = path.parent
        here = (
            [p.name for p in checkpoint.complete_checkpoints(run) if checkpoint.has_train_state(p)]
            if run.is_dir()
            else []
        )
        raise ParcError(
            f"branch_from={text} is not a complete checkpoint with training state (an exact branch needs "
            f"its optimizer, scheduler and RNG); with training state in {run}: {', '.join(here) or 'none'}"
        )
    found = initfrom.from_local(path, text, initfrom.portable(text), check_sha=download, key="branch_from")
    return StateSource(found.path, found.record)


def check_own_dir(cfg, text: str, source) -> None:
    """A branch of a raw checkpoint goes to an output_dir= given for it: neither this config's default directory
    (a grid cell's, where a run from scratch of this config goes) nor the raw checkpoint's save dir (or around it)."""
    from parc.config import cell_name

    out = Path(cfg.output_dir).resolve()
    root = Path(cfg.paths.output_root).resolve() / cfg.run_name
    defaults = {cell_name(cfg.arch.name, cfg.seed, cfg.data.shard), f"{cfg.arch.name}-{cfg.arch.size}-seed{cfg.seed}"}
    if out.parent == root and out.name in defaults:
        raise ParcError(
            f"branch_from={cfg.branch_from} needs an output_dir of its own ({out} is this config's default "
            "directory, a run from scratch's): pass output_dir=<new dir>"
        )
    save = None if text.startswith(f"{NEOX}hub:") else source.path.resolve().parent  # a Hub one: not fetched yet
    if save is not None and (out == save or save in out.parents or out in save.parents):
        raise ParcError(
            f"output_dir={cfg.output_dir} holds or lies in the raw checkpoint's save dir {save}: "
            "pass output_dir=<new dir> outside it"
        )


def _neox_source(cfg, text: str, output_dir: Path, download: bool):
    """A raw GPT-NeoX source (a Hub one fetched into `<output_dir>/branch_from/` when download=True), or None."""
    from parc.training import neox_source

    if cfg.resume == "auto" and checkpoint.newest_resumable(output_dir) is not None:
        return None  # the branch continues from its own checkpoints; the source is no longer needed
    if not download and text.startswith(f"{NEOX}hub:"):
        return None  # the checks before any write: a Hub source is only parsed (by settle)
    return neox_source.parse(text, output_dir / DOWNLOAD_DIR if download else None)


def fix_step(cfg, source: Optional[StateSource], start: Optional[Path]) -> None:
    """Every rank: set intervention.step to the branch's step k (the source's, or the record in the branch's own
    checkpoint when it resumes); an intervention.step given otherwise is refused."""
    if cfg.get("branch_from") is None:
        return
    if source is not None:
        step = source.record["step"]
    else:
        state = (checkpoint.read_trainer_state(start) or {}) if start else {}
        step = (state.get("branch") or {}).get("step")
        if step is None:
            raise ParcError(f"{start} is not a checkpoint of a branch of {cfg.branch_from}: choose another output_dir=")
    if cfg.intervention.step is not None and cfg.intervention.step != step:
        raise ParcError(
            f"intervention.step={cfg.intervention.step} but branch_from is a checkpoint of step {step}: "
            "leave intervention.step unset (the branch's step is the intervention's)"
        )
    cfg.intervention.step = step

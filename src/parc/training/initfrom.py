"""`init_from=<checkpoint dir | hub:org/name[@revision]>`: start a new run from another run's weights.

Only the weights are taken: the optimizer, the LR schedule, the step counter and the data position start
fresh, as for a run from scratch (e.g. to continue a finished run with a new schedule, or to study data
ablations from one shared checkpoint). The source is verified first (every file its manifest lists: size
and sha256; a Hub revision, `main` when the spec names none, is fetched by parc.hub.reader, verified, into
`<output_dir>/init_from/checkpoint-N`), and recorded in the new run's trainer state, checkpoint manifests,
config and metrics rows. It is part of the run's identity, so resuming the branched run (the same command
again) continues it, and a checkpoint of another run is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from parc.errors import ParcError
from parc.hub.reader import is_hub_spec
from parc.store import checkpoint

log = logging.getLogger("parc.training.initfrom")

DOWNLOAD_DIR = "init_from"  # under output_dir; not named checkpoint-*, so never taken for this run's own


@dataclass(frozen=True)
class InitSource:
    path: Path  # a verified local checkpoint directory (or a raw GPT-NeoX global_stepN directory)
    record: dict  # what the new run records: source, step, tokens, weights sha256 (and the Hub commit)

    def load_weights(self, model) -> None:
        if self.record["source"].startswith("neox:"):
            from parc.training import neox_source

            neox_source.check_and_load_weights(model, self.path, self.record["source"])
        else:
            checkpoint.load_weights(model, self.path)


def parse_hub(text: str, key: str = "init_from") -> tuple[str, str]:
    """'hub:org/name[@revision]' -> (repo id, revision); the revision defaults to main."""
    from parc.hub.reader import parse_hub_spec

    spec = parse_hub_spec(text, key)
    return spec.repo_id, spec.revision or "main"


def portable(text: Optional[str]) -> Optional[str]:
    """The source without local paths, for the config, the identity and published files: a Hub source as
    given, a local checkpoint as `<run dir name>/<checkpoint name>`."""
    if text is None or is_hub_spec(text):
        return text
    if text.startswith("neox:"):
        from parc.training import neox_source

        return neox_source.parse(text).source
    path = Path(text)
    return f"{path.parent.name}/{path.name}"


def resolve(cfg, output_dir: Path, download: bool = True) -> Optional[InitSource]:
    """The verified source of `cfg.init_from`, or None when it is not set. With download=False (the checks
    before anything is written) a Hub source is only parsed; a local one is checked (sizes only)."""
    text = cfg.init_from
    if text is None:
        return None
    if cfg.resume not in ("auto", "none"):
        raise ParcError(f"init_from= starts a new run, resume={cfg.resume} continues an existing one: pass one of them")
    if text.startswith("neox:"):  # a raw GPT-NeoX checkpoint: its fp32 master weights
        from parc.store import neox_raw
        from parc.training import neox_source

        start = neox_source.parse(text, Path(output_dir) / DOWNLOAD_DIR if download else None)
        if not download and text.startswith("neox:hub:"):
            return None  # the checks before anything is written: a Hub source is only parsed
        return InitSource(
            start.path, {"source": start.source, "step": neox_raw.iteration_of(start.path), "tokens": None}
        )
    hub = parse_hub(text) if is_hub_spec(text) else None
    if cfg.resume == "auto" and checkpoint.newest_resumable(output_dir) is not None:
        return None  # the branched run continues from its own checkpoints; the source is no longer needed
    if hub is not None:
        return from_hub(cfg, *hub, Path(output_dir)) if download else None
    return from_local(Path(text), text, portable(text), check_sha=download)


def from_local(
    path: Path, text: str, source: str, check_sha: bool, extra: Optional[dict] = None, key: str = "init_from"
) -> InitSource:
    """A verified local checkpoint as a source (`key`: the argument it was given as, named in errors)."""
    from parc.store import integrity

    if not path.is_dir():
        raise ParcError(
            f"{key}={text}: no such checkpoint directory; give a checkpoint-N directory of a run "
            "(python -m parc.verify <output_dir> lists them) or hub:<org/name>@<revision>"
        )
    verdict = integrity.verify(path, check_sha)
    if verdict.status != integrity.OK:
        raise ParcError(
            f"{key}={text} is not an intact checkpoint: {verdict.problem}; "
            "pick another one (python -m parc.verify <its output_dir> lists them)"
        )
    manifest = verdict.manifest
    record = {
        "source": source,
        "step": manifest["step"],
        "tokens": manifest.get("tokens"),
        "weights_sha256": manifest["files"].get("model.safetensors", {}).get("sha256"),
        **(extra or {}),
    }
    return InitSource(path, record)


def from_hub(
    cfg, repo_id: str, revision: str, output_dir: Path, key: str = "init_from", into: str = DOWNLOAD_DIR
) -> InitSource:
    """A Hub revision fetched (verified) into `<output_dir>/<into>/checkpoint-N` as a source; branch_from also needs
    its training state."""
    from parc.hub.reader import complete_revision, fetch_checkpoint, open_repo
    from parc.hub.repo import RetryPolicy

    source = f"hub:{repo_id}@{revision}"
    repo = open_repo(repo_id, cfg.hub.branch, RetryPolicy.from_config(cfg.hub), f"{key}={source}")
    remote = complete_revision(repo, revision, key)
    if key == "branch_from" and not remote.manifest.get("train_state"):
        raise ParcError(
            f"branch_from={source} holds no training state (optimizer, scheduler, RNG), so no exact "
            "branch can start there; pick a revision published with hub.push_train_state=true, or start "
            "from its weights alone with init_from="
        )
    log.info("parc: downloading the checkpoint to start from: %s of %s", revision, repo_id)
    path = fetch_checkpoint(repo, remote, output_dir / into)  # verified (sha256) by the fetch itself
    return from_local(path, source, source, check_sha=False, extra={"commit": remote.commit}, key=key)

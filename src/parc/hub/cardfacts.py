"""What a model card states about one run, read from what the run wrote: `RunFacts.read(output_dir)`.

Sources, all in the run's output_dir unless said: `config.yaml` (the portable config parc.train writes), the
final complete `checkpoint-N/` (`config.json` for the architecture and exact parameter counts, counted on a
model built on the meta device; `training_state/trainer_state.json` for the world size and library versions),
`metrics.jsonl` (the loss curve and the training time), `hub_journal/` (the revisions published, when the run
pushes), sibling runs of the same `run_name` beside it (how the suite's runs differ), and `parc.evaluate`'s
table `<evals>/results.parquet` (default: `<output_dir>/../evals`, where parc.evaluate writes for a run or a
grid). That table is read directly as the file format parc.evaluate documents (columns `source`, `step`,
`evaluation`, `task`, `metric`, `value`, `stderr`, `n`): the study layer that writes it sits above hub/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from parc.config import RUN_CONFIG, read_run_config
from parc.errors import ParcError
from parc.hub.branches import BranchTemplate
from parc.store.checkpoint import complete_checkpoints, read_manifest, read_trainer_state, step_of
from parc.store.metricsfile import METRICS_FILE
from parc.store.metricsfile import read_metrics as read_metrics_rows

RESULTS = "results.parquet"
EVAL_COLUMNS = ["source", "step", "evaluation", "task", "metric", "value", "stderr", "n"]


@dataclass
class Parameters:
    total: int  # unique parameters (tied embeddings once), as count_parameters and the suites' cards count
    embedding: int  # input embedding, plus the output embedding when it is not tied to it
    layers: int
    hidden_size: int
    heads: Optional[int]
    vocab_size: int

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding


@dataclass
class RunFacts:
    output_dir: Path
    cfg: Any  # the run's config.yaml (OmegaConf)
    final_step: int
    params: Parameters
    trainer_state: Dict[str, Any]
    losses: List[Tuple[int, float]]  # (step, training loss) from metrics.jsonl
    train_seconds: Optional[float]
    revisions: List[Tuple[int, str]]  # (step, branch name) of every published (or local) checkpoint
    repo_id: Optional[str]
    evals: Any = None  # this run's rows of results.parquet (pandas), or None
    siblings: List[Dict[str, Any]] = field(default_factory=list)  # identity of every run of the suite found here

    @classmethod
    def read(cls, output_dir: Path, evals_dir: Optional[Path] = None) -> "RunFacts":
        from omegaconf import OmegaConf

        output_dir = Path(output_dir)
        values = read_run_config(output_dir)
        if values is None:
            raise ParcError(f"{output_dir} has no {RUN_CONFIG}: give the output_dir of a run parc.train wrote")
        cfg = OmegaConf.create(values)
        checkpoints = complete_checkpoints(output_dir)
        if not checkpoints:
            raise ParcError(f"{output_dir} has no complete checkpoint-N/ yet: a card describes trained weights")
        final = checkpoints[-1]
        state = read_trainer_state(final) or {}
        journal = published_revisions(output_dir)
        template = BranchTemplate(str((journal or {}).get("branch") or cfg.hub.branch))
        if journal is not None:
            revisions = journal["revisions"]
        else:
            revisions = [(step_of(p), template.name(step_of(p))) for p in checkpoints if scheduled(p)]
        losses, seconds = read_metrics(output_dir / METRICS_FILE)
        repo_id = (journal or {}).get("repo_id") or repo_for(cfg)
        evals_dir = Path(evals_dir) if evals_dir is not None else output_dir.resolve().parent / "evals"
        sources = {str(output_dir.resolve())} | ({f"hub:{repo_id}"} if repo_id else set())
        return cls(
            output_dir,
            cfg,
            step_of(final),
            count_parameters(final, cfg.arch.name),
            state,
            losses,
            seconds,
            revisions,
            repo_id,
            read_evals(evals_dir / RESULTS, sources),
            suite_runs(output_dir, cfg),
        )

    @property
    def branch_template(self) -> BranchTemplate:
        journal = published_revisions(self.output_dir)
        return BranchTemplate(str((journal or {}).get("branch") or self.cfg.hub.branch))

    @property
    def tokens_per_step(self) -> int:
        return int(self.cfg.trainer.global_batch_size) * int(self.cfg.data.seq_len)


def scheduled(checkpoint_dir: Path) -> bool:
    return bool(read_manifest(checkpoint_dir).get("scheduled", True))


def repo_for(cfg) -> Optional[str]:
    if cfg.hub.repo_id is None:
        return None
    from parc.hub.repo import repo_id_for

    return repo_id_for(cfg)


def published_revisions(output_dir: Path) -> Optional[dict]:
    """The run's Hub target and its checkpoint revisions, pushed or still pending (not abandoned ones, not
    main), from hub_journal/; None when the run never published."""
    from parc.hub.journal import MAIN, Journal

    journal = Journal(output_dir)
    target = journal.target()
    if target is None:
        return None
    entries = [e for e in journal.entries() if e["revision"] != MAIN and e["state"] != "abandoned"]
    return {
        "repo_id": target["repo_id"],
        "branch": target.get("branch"),
        "revisions": sorted({(int(e["step"]), e["revision"]) for e in entries}),
    }


def read_metrics(path: Path) -> Tuple[List[Tuple[int, float]], Optional[float]]:
    """(step, loss) of every row of metrics.jsonl (a resumed run's repeated steps: the last row wins), and the
    sum of the rows' step_seconds (None where the rows do not say)."""
    rows: Dict[int, dict] = {}
    if path.is_file():  # through the file's one reader: a line cut short by a crash is left out
        rows = {row["step"]: row for row in read_metrics_rows(path)}
    losses = [(step, float(row["loss"])) for step, row in sorted(rows.items()) if row.get("loss") is not None]
    seconds = [row.get("step_seconds") for row in rows.values()]
    total = sum(seconds) if seconds and all(s is not None for s in seconds) else None
    return losses, total


def count_parameters(checkpoint_dir: Path, arch: str) -> Parameters:
    """Exact counts from the checkpoint's config.json, on a model built on the meta device (no memory, no init)."""
    import torch

    from parc.archs import count_parameters as unique_parameters
    from parc.archs import get_spec

    spec = get_spec(arch)
    config = spec.config_class.from_pretrained(checkpoint_dir)
    with spec.build_context(), torch.device("meta"):
        model = spec.model_class(config)
    embed_in = model.get_input_embeddings().weight
    embed_out = model.get_output_embeddings()
    embedding = embed_in.numel() + (embed_out.weight.numel() if embed_out.weight is not embed_in else 0)
    heads = getattr(config, "num_attention_heads", None)
    return Parameters(
        unique_parameters(model),
        embedding,
        int(config.num_hidden_layers),
        int(config.hidden_size),
        int(heads) if heads else None,
        int(config.vocab_size),
    )


def read_evals(path: Path, sources: set):
    """This run's rows of parc.evaluate's results.parquet (by `source`: the run directory or its Hub repo)."""
    if not path.is_file():
        return None
    import pandas as pd

    table = pd.read_parquet(path)
    missing = [c for c in EVAL_COLUMNS if c not in table.columns]
    if missing:
        raise ParcError(f"{path} is not a parc.evaluate results table (no {', '.join(missing)} column)")
    rows = table[table["source"].isin(sources)]
    return rows.reset_index(drop=True) if len(rows) else None


def suite_runs(output_dir: Path, cfg) -> List[Dict[str, Any]]:
    """Every run of the same run_name beside this one (a grid's runs), as (arch, size, seed, shard, data_seed)."""
    from omegaconf import OmegaConf

    found = []
    for config in sorted(Path(output_dir).resolve().parent.glob(f"*/{RUN_CONFIG}")):
        try:
            other = OmegaConf.create(read_run_config(config.parent))
            if other.run_name == cfg.run_name:
                found.append(identity(other))
        except Exception:  # a foreign or damaged config.yaml is not one of the suite's runs
            continue
    return sorted(found, key=lambda r: (r["arch"], str(r["size"]), r["seed"], r["shard"], str(r["data_seed"])))


def identity(cfg) -> Dict[str, Any]:
    return {
        "arch": str(cfg.arch.name),
        "size": str(cfg.arch.size),
        "seed": int(cfg.seed),
        "shard": int(cfg.data.shard),
        "data_seed": cfg.data.data_seed,
    }

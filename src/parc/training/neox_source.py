"""A raw GPT-NeoX checkpoint as a source of training state (`NeoxSource`, a kind of parc.training.source's
`StateSource`): `resume=neox:<dir>` continues it (weights, Adam moments, LR schedule, step, data position, fp16 loss
scale), `branch_from=neox:<dir>` continues it the same way as an exact branch (then `intervention=` changes the
data after its step), `init_from=neox:<dir>` takes its weights only. `<dir>` is a global_stepN directory or a save
dir with `latest`; `neox:hub:<org/name>@<revision>` is fetched and verified first.

What the source gives the Trainer (Parc's in-memory training state, as `StateSource.load` returns it): the fp32
masters as the model's state dict (HF names), an AdamW state dict in this optimizer's parameter order (the NeoX
decay groups), the scheduler at NeoX's `num_iters` (= iteration - fp16-skipped steps), step = `iteration`, tokens =
iteration x tokens per step, and the loss scale; no RNG state (Parc's data order does not draw from it). The Adam
step count is not in the files: it is set as NeoX's own resume sets it (its optimizer's dummy init step leaves t = 1,
so the first real update uses t = 2). The checkpoint must describe the configured architecture (args: layers, hidden
size, heads, padded vocab) and, when it has one, the configured NeoX schedule (start_lr, min_lr, warmup, end
iteration) and global batch: anything else is refused in one line. A raw checkpoint has no Parc data fingerprint, so
a branch from it cannot check that its batches of steps 1..k are the ones NeoX trained on (a `note:` says so).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from parc.errors import ParcError
from parc.store import neox_raw
from parc.training.source import StateSource

PREFIX = "neox:"
ADAM_STEP_AFTER_RESUME = 1.0  # NeoX's dummy init step: the first update after a resume uses t = 2


@dataclass(frozen=True)
class NeoxSource(StateSource):
    """A raw checkpoint to continue (picklable: it crosses ranks with broadcast_object_list). `path`: the
    global_stepN directory; `record`: {"source": the portable spec neox:<save dir name>/<tag>, "step": N}."""

    @property
    def source(self) -> str:
        return self.record["source"]

    def load(self, trainer, model: torch.nn.Module, optimizer: torch.optim.Optimizer, branch: bool = False) -> dict:
        """Weights (into `model`), schedule, step, tokens and loss scale from the raw checkpoint, checked against
        this run's architecture and recipe; the optimizer state is loaded after `accelerator.prepare`."""
        raw = read(self)
        check_architecture(raw, model, self.source)
        check_recipe(raw, trainer.cfg.trainer, self.source)
        if branch and trainer.accelerator.is_main_process:
            print(
                f"note: branch_from={self.source} has no Parc data fingerprint, so the batches of steps 1..{raw.iteration} "
                f"are not checked against the ones it was trained on: matching them is yours (data=pile_pythia "
                f"reproduces Pythia's order)",
                file=sys.stderr,
                flush=True,
            )
        load_weights(model, raw)
        restore_loss_scale(trainer.accelerator, raw)
        record = {
            **self.record,
            "step": raw.iteration,
            "format": raw.format,
            "num_iters": raw.num_iters,
            "adam_step": "restarted as NeoX resumes (t = 2 next)",
        }
        scheduler = scheduler_state(trainer.scheduler, raw.num_iters)
        return {
            "trainer": {
                "step": raw.iteration,
                "tokens": raw.iteration * trainer.plan.tokens_per_step,
                "init_from": None if branch else record,  # resume=neox: records its start as init_from
                "branch": record if branch else None,
            },
            "scheduler": scheduler,
            "rng": None,
            "optimizer": optimizer_state(optimizer, model, raw, scheduler["_last_lr"][0]),
        }

    def load_weights(self, model: torch.nn.Module) -> None:
        check_and_load_weights(model, self.path, self.source)


def parse(text: str, download_dir: Optional[Path] = None) -> NeoxSource:
    """`neox:<dir>` (a global_stepN directory or a save dir with `latest`). The one function to swap for the shared
    grammar; `neox:hub:org/name@revision` is fetched into `download_dir` (None: only parsed, path and step unknown)."""
    if not text.startswith(PREFIX) or len(text) == len(PREFIX):
        raise ParcError(f"{text!r}: write neox:<global_stepN directory> (or neox:hub:<org/name>@<revision>)")
    where = text[len(PREFIX) :]
    if where.startswith("hub:"):
        return _from_hub(where, download_dir)
    return _located(neox_raw.locate(Path(where)), None)


def _located(path: Path, spec: Optional[str]) -> NeoxSource:
    source = spec or f"{PREFIX}{path.parent.name}/{path.name}"
    return NeoxSource(path, {"source": source, "step": neox_raw.tag_iteration(path)})


def _from_hub(spec: str, download_dir: Optional[Path]) -> NeoxSource:
    """A raw branch on the Hub (e.g. EleutherAI/neox-ckpt-pythia-160m-deduped@step1000), fetched by the hub
    package's reader into `download_dir/<org--name>/<revision>`, every file verified (LFS sha256 / git blob id)."""
    from parc.hub import fetch_revision, open_repo, parse_hub_spec

    hub = parse_hub_spec(spec, "neox")
    if hub.revision is None:
        raise ParcError(
            f"neox:{spec}: name the branch, e.g. neox:hub:EleutherAI/neox-ckpt-pythia-160m-deduped@step1000"
        )
    if download_dir is None:
        return NeoxSource(Path(str(hub)), {"source": f"{PREFIX}{hub}", "step": None})
    repo = open_repo(hub.repo_id, what=f"{PREFIX}{hub}")
    local = fetch_revision(repo, hub.revision, download_dir / hub.repo_id.replace("/", "--") / hub.revision)
    return _located(neox_raw.locate(local), f"{PREFIX}{hub}")


def read(start: NeoxSource) -> neox_raw.RawCheckpoint:
    raw = neox_raw.read_raw(start.path)
    print(
        f"parc: read {start.source} ({raw.format}, {raw.dp} data- x {raw.mp} model-parallel ranks, "
        f"{raw.bytes_read / 1e9:.3g} GB in {raw.seconds:.1f} s; {len(raw.checked_halves)} layer tensors equal "
        f"their fp32 masters cast down)",
        flush=True,
    )
    return raw


def check_architecture(raw: neox_raw.RawCheckpoint, model: torch.nn.Module, where: str) -> None:
    """Refuse a checkpoint of another architecture: args first (NeoX's own check), then every tensor's shape."""
    config = model.config
    if raw.args:
        pairs = {
            "num_layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size,
            "num_attention_heads": config.num_attention_heads,
            "padded_vocab_size": config.vocab_size,
        }
        for key, value in pairs.items():
            if key in raw.args and raw.args[key] != value:
                raise ParcError(
                    f"{where} is a model with {key}={raw.args[key]}, this run's architecture has {value}: "
                    f"pick the matching arch.size (or data tokenizer / vocab padding)"
                )
    own = {n: p.shape for n, p in model.named_parameters()}
    weights = neox_raw.for_model(raw.weights, own)
    if set(own) != set(weights) or any(own[n] != weights[n].shape for n in own):
        wrong = sorted(
            n for n in set(own) | set(weights) if n not in own or n not in weights or own[n] != weights[n].shape
        )
        raise ParcError(
            f"{where} does not fit this run's architecture (first difference: {wrong[0]}): pick the matching arch.size"
        )


def check_recipe(raw: neox_raw.RawCheckpoint, trainer_cfg, where: str) -> None:
    """NeoX refuses to resume under another schedule; so does Parc (a new schedule is init_from=)."""
    from parc.training.lr_neox import warmup_iters

    schedule = raw.lr_scheduler
    if schedule:
        if trainer_cfg.lr_schedule != "neox":
            raise ParcError(f"{where} continues NeoX's LR schedule: set trainer.lr_schedule=neox (experiment=pythia)")
        wanted = {
            "start_lr": trainer_cfg.lr,
            "min_lr": trainer_cfg.min_lr,
            "end_iter": trainer_cfg.max_steps,
            "warmup_iter": warmup_iters(trainer_cfg),
        }
        for key, value in wanted.items():
            if key in schedule and abs(float(schedule[key]) - float(value)) > 1e-12 * max(1.0, abs(float(value))):
                raise ParcError(
                    f"{where} was trained with {key}={schedule[key]}, this run's schedule gives {value}: "
                    f"continue with the same schedule, or start a new one from its weights with "
                    f"init_from=neox:<dir>"
                )
    if raw.train_batch_size and raw.train_batch_size != trainer_cfg.global_batch_size:
        raise ParcError(
            f"{where} was trained with {raw.train_batch_size} samples per step, this run with "
            f"trainer.global_batch_size={trainer_cfg.global_batch_size}: the data position "
            f"(iteration x batch) would differ"
        )


def load_weights(model: torch.nn.Module, raw: neox_raw.RawCheckpoint) -> None:
    weights = neox_raw.for_model(raw.weights, dict(model.named_parameters()))
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(weights[name])


def optimizer_state(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, raw: neox_raw.RawCheckpoint, lr: float
) -> dict:
    """An AdamW state dict in this optimizer's numbering (the order of its groups' params), NeoX's moments."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    moments_of = neox_raw.for_model(raw.moments, name_of.values())
    state, index = {}, 0
    groups = optimizer.state_dict()["param_groups"]
    for group in optimizer.param_groups:
        for param in group["params"]:
            moments = moments_of[name_of[id(param)]]
            state[index] = {
                "step": torch.tensor(ADAM_STEP_AFTER_RESUME),
                "exp_avg": moments["exp_avg"].clone(),
                "exp_avg_sq": moments["exp_avg_sq"].clone(),
            }
            index += 1
    return {"state": state, "param_groups": [{**g, "lr": lr} for g in groups]}


def scheduler_state(scheduler, num_iters: int) -> dict:
    """The LambdaLR state at NeoX's `num_iters`: the next update uses lr(num_iters), as NeoX's."""
    last = [base * f(num_iters) for base, f in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    return {**scheduler.state_dict(), "last_epoch": num_iters, "_last_lr": last}


def restore_loss_scale(accelerator, raw: neox_raw.RawCheckpoint) -> None:
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and raw.loss_scale and scaler.is_enabled():
        scaler.load_state_dict(
            {**scaler.state_dict(), "scale": float(raw.loss_scale["cur_scale"]), "_growth_tracker": 0}
        )


def check_and_load_weights(model: torch.nn.Module, path: Path, source: str) -> None:
    raw = neox_raw.read_raw(path)
    check_architecture(raw, model, source)
    load_weights(model, raw)

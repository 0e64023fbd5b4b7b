"""A run's model card: `README.md` built with huggingface_hub's `ModelCard` / `ModelCardData`, and the loss
curve it shows (`loss_curve.png`, drawn from metrics.jsonl), in the sections of the suites' cards (Parc-Pythia,
Pythia): what the suite is and how its runs differ, model details with exact parameter counts, uses and
limitations, a quickstart loading a `revision=`, the checkpoint list, training data and procedure, evaluations
(model-index metadata where parc.evaluate has results for the final step), the loss curve, citation.

`card_files(output_dir, work_dir)` writes both files (what the publisher puts in `main`'s final commit and
`parc.sync` refreshes); `write_card(output_dir, out)` is `python -m parc.card`. The card is a pure function of
the run's files, so an unchanged run gives byte-identical files (a refresh then commits nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from parc.config import cell_name
from parc.hub.cardfacts import RunFacts
from parc.store.fileio import atomic_write

CARD_FILE = "README.md"
CURVE_FILE = "loss_curve.png"
SUITE_URL = "https://huggingface.co/jmichaelov"  # the Parc suite (Michaelov et al., 2025)
ARCHS = {
    "pythia": ("Pythia", "Pythia (GPT-NeoX autoregressive transformer)", "EleutherAI/pythia-160m"),
    "mamba": ("Mamba", "Mamba (selective state-space model)", "state-spaces/mamba-130m-hf"),
    "rwkv": ("RWKV", "RWKV-4 (recurrent network with linear attention)", "RWKV/rwkv-4-169m-pile"),
}
SUITES = {"parc": "Parc", "pythia": "Pythia-Parc", "mini_parc": "mini-Parc", "demo": "Parc-demo"}
SCHEDULES = {
    "cosine": "cosine decay to `min_lr` after linear warmup (transformers' `get_cosine_schedule_with_warmup`)",
    "neox": "GPT-NeoX's AnnealingLR: linear warmup, then cosine decay to `min_lr`",
}
CITATION = """@inproceedings{michaelov_language_2025,
  title = {Language {Model} {Behavioral} {Phases} are {Consistent} {Across} {Scale} and {Architecture}},
  author = {Michaelov, James A. and Levy, Roger P. and Bergen, Benjamin K.},
  booktitle = {Advances in {Neural} {Information} {Processing} {Systems}},
  volume = {38},
  year = {2025}
}

@inproceedings{biderman2023pythia,
  title = {Pythia: A Suite for Analyzing Large Language Models Across Training and Scaling},
  author = {Biderman, Stella and Schoelkopf, Hailey and Anthony, Quentin Gregory and Bradley, Herbie and O'Brien, Kyle and Hallahan, Eric and Khan, Mohammad Aflah and Purohit, Shivanshu and Prashanth, USVSN Sai and Raff, Edward and others},
  booktitle = {International Conference on Machine Learning},
  pages = {2397--2430},
  year = {2023}
}"""


def card_files(output_dir: Path, work_dir: Path, evals_dir: Optional[Path] = None) -> Dict[str, Path]:
    """Write README.md (and loss_curve.png when metrics.jsonl has losses) into work_dir: path in repo -> file."""
    facts = RunFacts.read(output_dir, evals_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    if facts.losses:
        files[CURVE_FILE] = draw_loss_curve(facts, work_dir / CURVE_FILE)
    card = build_card(facts, curve=CURVE_FILE in files)
    files[CARD_FILE] = atomic_write(work_dir / CARD_FILE, lambda tmp: Path(tmp).write_text(str(card)))
    return files


def write_card(output_dir: Path, out: Optional[Path] = None, evals_dir: Optional[Path] = None) -> Dict[str, Path]:
    """`python -m parc.card`: the card a publish would push, written to `out` (default: the run's own dir)."""
    files = card_files(Path(output_dir), Path(out) if out else Path(output_dir), evals_dir)
    for name, path in files.items():
        print(f"wrote {path}")
    return files


def build_card(facts: RunFacts, curve: bool = True):
    from huggingface_hub import ModelCard, ModelCardData

    cfg = facts.cfg
    data = ModelCardData(
        license="apache-2.0",
        language=["en"],
        library_name="transformers",
        pipeline_tag="text-generation",
        datasets=[str(cfg.data.dataset)] if "/" in str(cfg.data.dataset) else None,
        base_model=[base_model(cfg)] if base_model(cfg) else None,
        tags=tags(cfg),
        model_name=title(facts),
        eval_results=eval_results(facts) or None,
    )
    sections = [
        f"# {title(facts)}",
        suite_section(facts),
        details_section(facts),
        uses_section(facts),
        quickstart_section(facts),
        checkpoints_section(facts),
        training_section(facts, curve),
        evaluation_section(facts),
        f"## Citation\n\n```bibtex\n{CITATION}\n```",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


# --- metadata -------------------------------------------------------------------------------------------


def base_model(cfg) -> Optional[str]:
    """The Hub repo a run was initialised from (init_from=hub:org/name@rev); a local source has no Hub id."""
    from parc.hub.reader import is_hub_spec, parse_hub_spec

    source = cfg.get("init_from")
    return parse_hub_spec(str(source), "init_from").repo_id if is_hub_spec(str(source)) else None


def tags(cfg) -> List[str]:
    return ["parc", "pytorch", "causal-lm", str(cfg.arch.name), str(cfg.arch.model_type), f"seed-{cfg.seed}"]


def title(facts: RunFacts) -> str:
    cfg = facts.cfg
    suite = SUITES.get(str(cfg.run_name), str(cfg.run_name))
    extra = ([f"shard {cfg.data.shard}"] if int(cfg.data.shard) else []) + (
        [f"data seed {cfg.data.data_seed}"] if cfg.data.data_seed is not None else []
    )
    return f"{suite}-{ARCHS[cfg.arch.name][0]} (Seed {cfg.seed}{''.join(', ' + e for e in extra)})"


def final_rows(facts: RunFacts):
    if facts.evals is None:
        return None
    rows = facts.evals[facts.evals["step"] == facts.final_step]
    return rows.sort_values(["evaluation", "task", "metric"], kind="mergesort") if len(rows) else None


def eval_results(facts: RunFacts) -> list:
    """model-index entries: every result parc.evaluate has for the final step (the weights on main)."""
    from huggingface_hub import EvalResult

    rows = final_rows(facts)
    if rows is None:
        return []
    return [
        EvalResult(
            task_type="text-generation",
            task_name=f"{row.evaluation}",
            dataset_type=str(row.task),
            dataset_name=str(row.task),
            metric_type=str(row.metric),
            metric_name=str(row.metric),
            metric_value=float(row.value),
        )
        for row in rows.itertuples()
    ]


# --- sections -------------------------------------------------------------------------------------------


def number(value: int) -> str:
    return f"{int(value):,}"


def suite_section(facts: RunFacts) -> str:
    cfg, t = facts.cfg, facts.cfg.trainer
    tokens = int(t.max_steps) * facts.tokens_per_step
    text = (
        f"This model is one run of the **{SUITES.get(str(cfg.run_name), str(cfg.run_name))}** suite "
        f"(`run_name={cfg.run_name}`), trained with Parc (whose default recipe is the [Parc suite]({SUITE_URL})): "
        f"autoregressive language models of the {suite_archs(facts)} trained in parallel on the same data ({number(tokens)} tokens of "
        f"{data_name(cfg)}) for the same number of steps ({number(t.max_steps)}), so that training dynamics can "
        "be compared across and within architectures. Runs differ only in:\n\n"
        "- **architecture** (`arch`): the model's family and size;\n"
        "- **seed** (`seed`): the weight initialisation only (`transformers.set_seed(seed)`, then the model is "
        "built from its config); every seed sees the same data in the same order;\n"
        f"- **shard** (`data.shard`): the k-th disjoint slice of {number(int(t.max_steps) * int(t.global_batch_size))} "
        "sequences of the packed stream (shard 0: the slice the suite trained on);\n"
        "- **data seed** (`data.data_seed`): a permutation of the sequences within the shard (none: stream order).\n\n"
        f"This run: arch **{cfg.arch.name}** (size `{cfg.arch.size}`), seed **{cfg.seed}**, shard "
        f"**{cfg.data.shard}**, data seed **{cfg.data.data_seed if cfg.data.data_seed is not None else 'none'}**."
    )
    if len(facts.siblings) > 1:
        lines = ["| arch | size | seed | shard | data seed |", "| --- | --- | ---: | ---: | ---: |"]
        lines += [
            f"| {r['arch']} | {r['size']} | {r['seed']} | {r['shard']} | "
            f"{r['data_seed'] if r['data_seed'] is not None else 'none'} |"
            for r in facts.siblings
        ]
        text += f"\n\nThe suite's runs trained beside this one ({len(facts.siblings)}):\n\n" + "\n".join(lines)
    return text


def suite_archs(facts: RunFacts) -> str:
    """The Parc suite's three architectures, or those of the suite's runs found beside this one."""
    names = (
        ["pythia", "mamba", "rwkv"]
        if str(facts.cfg.run_name) == "parc"
        else sorted({r["arch"] for r in facts.siblings} | {str(facts.cfg.arch.name)})
    )
    titles = [ARCHS[name][0] for name in names]
    joined = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + f" and {titles[-1]}"
    return f"{joined} architecture{'s' if len(titles) > 1 else ''}"


def packing(cfg) -> str:
    if cfg.data.get("format") == "megatron":
        return f"Megatron indexed samples of {number(int(cfg.data.seq_len) + 1)} tokens (read in place)"
    return f"{cfg.data.get('packing', 'parc')} packing into {number(cfg.data.seq_len)}-token sequences"


def data_name(cfg) -> str:
    dataset = str(cfg.data.dataset)
    if "/" in dataset:
        return f"[{dataset}](https://huggingface.co/datasets/{dataset})"
    return f"`{cfg.data.name}` ({', '.join(file_names(cfg.data.get('data_files'))) or dataset})"


def file_names(files) -> List[str]:
    """data.data_files as names only (a path, a list of them, or {split: paths})."""
    from omegaconf import OmegaConf

    files = OmegaConf.to_container(files) if OmegaConf.is_config(files) else files
    if not files:
        return []
    if isinstance(files, dict):
        return [name for value in files.values() for name in file_names(value)]
    return [Path(str(f)).name for f in ([files] if isinstance(files, str) else files)]


def details_section(facts: RunFacts) -> str:
    cfg, p = facts.cfg, facts.params
    name, kind, source = ARCHS[cfg.arch.name]
    lines = [
        "## Model Details",
        "",
        f"- Model type: {kind}",
        f"- Architecture: {p.layers} layers, model dimension {p.hidden_size}"
        + (f", {p.heads} attention heads" if p.heads else "")
        + f", vocabulary {number(p.vocab_size)}, "
        f"context length {number(cfg.data.seq_len)} tokens",
        f"- Parameters: {number(p.total)} in total, {number(p.non_embedding)} non-embedding "
        "(counted from the published config; tied embeddings once)",
        f"- Configuration: copied from [{source}](https://huggingface.co/{source})"
        + (f" at size `{cfg.arch.size}`" if str(cfg.arch.size) != "full" else "")
        + "; weights randomly initialised, never downloaded",
        "- Language: English",
        "- License: Apache 2.0",
        "- Library: [transformers](https://github.com/"
        "huggingface/transformers) (`AutoModelForCausalLM`), trained with Parc",
    ]
    if cfg.get("init_from"):
        lines.append(f"- Initialised from: `{cfg.init_from}` (then trained with a fresh optimizer and LR schedule)")
    return "\n".join(lines)


def uses_section(facts: RunFacts) -> str:
    return (
        "## Uses and Limitations\n\n"
        "These models are intended for research on language models and their training dynamics (the suite's "
        "controlled differences make seeds and architectures comparable); they are not suitable for "
        "deployment. They are pretrained only, not fine-tuned or aligned in any way, on web or book text that "
        "is not curated: they may generate harmful, offensive or false text, and nothing they generate should "
        "be trusted as accurate. English only. For a model to fine-tune, the original, larger-data "
        f"{ARCHS[facts.cfg.arch.name][0]} models are a better start."
    )


def quickstart_section(facts: RunFacts) -> str:
    cell = cell_name(facts.cfg.arch.name, facts.cfg.seed, facts.cfg.data.shard)
    repo = facts.repo_id or f"<org>/{facts.cfg.run_name}-{cell}"
    revision = facts.branch_template.name(facts.final_step)
    return (
        "## How to Get Started with the Model\n\n```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'model = AutoModelForCausalLM.from_pretrained("{repo}", revision="{revision}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{repo}", revision="{revision}")\n'
        'inputs = tokenizer("The Parc language models", return_tensors="pt")\n'
        "tokens = model.generate(**inputs)\nprint(tokenizer.decode(tokens[0]))\n```\n\n"
        f"Revision `{revision}` is the final checkpoint; `main` holds exactly the same weights."
    )


def checkpoints_section(facts: RunFacts) -> str:
    template = facts.branch_template.template
    names = ", ".join(f"`{name}`" for _, name in facts.revisions)
    return (
        f"## Checkpoints\n\n{len(facts.revisions)} checkpoints, one Hub branch each, named `{template}` "
        f"(`{{N}}` = optimizer updates done; `{facts.branch_template.name(0)}` is the initialisation): {names}. "
        f"Step N has seen N x {number(facts.tokens_per_step)} tokens. Each revision holds the weights, the "
        "tokenizer, `parc_checkpoint.json` (every file's size and sha256) and, unless published weights-only, "
        "the training state (optimizer, scheduler, RNG) to resume from."
    )


def duration(seconds: float) -> str:
    return (
        f"{seconds / 3600:.1f} hours"
        if seconds >= 3600
        else f"{seconds / 60:.1f} minutes"
        if seconds >= 60
        else f"{seconds:.1f} seconds"
    )


def training_section(facts: RunFacts, curve: bool) -> str:
    cfg, t = facts.cfg, facts.cfg.trainer
    steps, batch, seq = int(t.max_steps), int(t.global_batch_size), int(cfg.data.seq_len)
    state, versions = facts.trainer_state, facts.trainer_state.get("versions", {})
    lines = [
        "## Training Details",
        "",
        "### Training Data",
        "",
        f"- Dataset: {data_name(cfg)}, split `{cfg.data.split if 'split' in cfg.data else 'train'}`, "
        f"tokenizer `{cfg.data.tokenizer}`, {packing(cfg)}",
        f"- Shard {cfg.data.shard}: sequences [{number(int(cfg.data.shard) * steps * batch)}, "
        f"{number((int(cfg.data.shard) + 1) * steps * batch)}) of the packed stream, "
        + (f"permuted with data seed {cfg.data.data_seed}" if cfg.data.data_seed is not None else "in stream order"),
        "",
        "### Training Procedure",
        "",
        f"- Context length: {number(seq)} tokens",
        f"- Effective batch size: {number(batch)} sequences (micro-batch x gradient accumulation x processes)",
        f"- Total training steps: {number(steps)}",
        f"- Total tokens: {number(steps)} x {number(batch)} x {number(seq)} = {number(steps * batch * seq)}",
        "",
        "### Training Hyperparameters",
        "",
        f"- Optimizer: AdamW, betas ({', '.join(str(b) for b in t.betas)}), eps {t.eps}, weight decay "
        f"{t.weight_decay} ({t.weight_decay_rule} rule), gradient clipping {t.grad_clip}",
        f"- Learning rate: {t.lr}, warmup {number(t.warmup_steps)} steps, minimum {t.get('min_lr', 0.0)}",
        f"- Learning rate scheduler: {SCHEDULES.get(str(t.lr_schedule), str(t.lr_schedule))}",
        f"- Precision: {t.precision}" + (" (TF32 matmuls)" if t.get("tf32") else ""),
        "",
        "### Compute",
        "",
        f"- Processes: {state.get('world_size', 'not recorded')}; torch {versions.get('torch', '?')}, "
        f"transformers {versions.get('transformers', '?')}, parc {versions.get('parc', '?')}",
        "- Training time: "
        + (
            f"{duration(facts.train_seconds)} of optimizer steps (metrics.jsonl)"
            if facts.train_seconds is not None
            else "not recorded"
        ),
        "- Hardware: not recorded by the run",
    ]
    if curve:
        lines += ["", "### Training loss", "", f"![Training loss per step]({CURVE_FILE})"]
    return "\n".join(lines)


def evaluation_section(facts: RunFacts) -> str:
    if facts.evals is None:
        return (
            "## Evaluation\n\nNo results yet: `python -m parc.evaluate runs=<run>` writes them, and "
            "`python -m parc.sync <output_dir>` then refreshes this card."
        )
    table = facts.evals
    steps = sorted(set(int(s) for s in table["step"]))
    if len(steps) > 6:  # the first, the last and evenly spaced ones between
        steps = sorted({steps[round(i * (len(steps) - 1) / 5)] for i in range(6)})
    header = "| evaluation | task | metric | " + " | ".join(f"step {s}" for s in steps) + " |"
    lines = [header, "| --- | --- | --- | " + " | ".join("---:" for _ in steps) + " |"]
    for (evaluation, task, metric), group in table.groupby(["evaluation", "task", "metric"], sort=True):
        by_step = {int(r.step): float(r.value) for r in group.itertuples()}
        lines.append(
            f"| {evaluation} | {task} | {metric} | "
            + " | ".join(f"{by_step[s]:.4g}" if s in by_step else "" for s in steps)
            + " |"
        )
    return (
        "## Evaluation\n\nResults of `parc.evaluate` (held-out loss on sequences no run of the suite trained "
        "on; lm-eval tasks through the Language Model Evaluation Harness), at "
        f"{len(steps)} of the evaluated checkpoints:\n\n" + "\n".join(lines)
    )


def draw_loss_curve(facts: RunFacts, path: Path) -> Path:
    """Training loss per step from metrics.jsonl; deterministic bytes for the same rows (no timestamp)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    steps, losses = zip(*facts.losses)
    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.subplots()
    axes.plot(steps, losses, linewidth=1.0, color="#1f77b4")
    axes.set_xlabel("step (optimizer updates)")
    axes.set_ylabel("training loss (nats/token)")
    axes.set_title(title(facts), fontsize=10)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", metadata={"Software": None}))

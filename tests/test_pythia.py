"""Pythia / PolyPythias reproduction: size presets (totals vs the published counts and closed-form counts), NeoX
init statistics, tanh GELU, the NeoX v1.0 LR schedule, the decay rule, the 154 checkpoint steps, the memory plan,
and a short experiment=pythia run on the demo corpus that trains, checkpoints and resumes bit-exactly."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from parc import archs
from parc.config import compose
from parc.errors import ParcError
from parc.store.metricsfile import read_metrics
from parc.training.runconfig import validate

from conftest import run_cli
from hub_server import hub_server  # noqa: F401  (the fixture)

# The table (Pythia NeoX configs; 14m/31m computed), vocab = 50277 padded by NeoX's rule.
PYTHIA = {
    "14m": 14_067_712,
    "31m": 30_494_720,
    "70m": 70_426_624,
    "160m": 162_322_944,
    "410m": 405_334_016,
    "1b": 1_011_781_632,
    "1.4b": 1_414_647_808,
    "2.8b": 2_775_208_960,
    "6.9b": 6_857_302_016,
    "12b": 11_846_072_320,
}
PYTHIA_VOCAB = {"6.9b": 50432, "12b": 50688}
# (d, layers) of the published HF configs: state-spaces/mamba-*-hf and RWKV/rwkv-4-*-pile.
MAMBA = {"130m": (768, 24), "370m": (1024, 48), "790m": (1536, 48), "1.4b": (2048, 48), "2.8b": (2560, 64)}
RWKV = {"169m": (768, 12), "430m": (1024, 24), "1b5": (2048, 24), "3b": (2560, 32), "7b": (4096, 32), "14b": (5120, 40)}
PUBLISHED = {("mamba", "130m"): 129_135_360, ("rwkv", "430m"): 430_397_440}


@pytest.fixture(scope="module")
def base():
    return {name: compose([f"arch={name}"]) for name in ("pythia", "mamba", "rwkv")}


def meta_total(cfg, size):
    cfg = cfg.copy()
    OmegaConf.update(cfg, "arch.size", size)
    model = archs.build_model(cfg.arch, 50277, seed=0, device="meta")
    return archs.count_parameters(model), model.config.vocab_size


@pytest.mark.parametrize("size", sorted(PYTHIA))
def test_pythia_preset_totals(base, size):
    assert meta_total(base["pythia"], size) == (PYTHIA[size], PYTHIA_VOCAB.get(size, 50304))


def mamba_count(d, layers, vocab=50280, state=16, conv=4):
    inner, rank = 2 * d, math.ceil(d / 16)
    per_layer = (
        d
        + d * 2 * inner
        + inner * conv
        + inner
        + inner * (rank + 2 * state)
        + rank * inner
        + inner
        + inner * state
        + inner
        + inner * d
    )  # norm, in_proj, conv w+b, x_proj, dt_proj w+b, A_log, D, out_proj
    return vocab * d + layers * per_layer + d  # tied embedding, norm_f


def rwkv_count(d, layers, vocab=50277):
    attention = 2 * d + 3 * d + 4 * d * d  # time_decay, time_first, 3 time_mix, key/value/receptance/output
    ffn = 2 * d + 2 * d * 4 * d + d * d  # 2 time_mix, key + value (4d), receptance
    return (
        vocab * d + 2 * d + layers * (4 * d + attention + ffn) + 2 * d + d * vocab
    )  # emb, pre_ln, blocks, ln_out, head


@pytest.mark.parametrize("arch,size", [("mamba", s) for s in MAMBA] + [("rwkv", s) for s in RWKV])
def test_mamba_and_rwkv_preset_totals(base, arch, size):
    total, vocab = meta_total(base[arch], size)
    formula = mamba_count(*MAMBA[size]) if arch == "mamba" else rwkv_count(*RWKV[size])
    assert total == formula
    assert total == PUBLISHED.get((arch, size), total)
    assert vocab == (50280 if arch == "mamba" else 50277)


def test_full_stays_the_default_and_unknown_sizes_are_refused(base):
    assert base["pythia"].arch.size == "full" and base["pythia"].arch.init == "hf"
    with pytest.raises(ParcError, match="arch.size='15b' is not one of full, tiny, 14m"):
        validate(compose(["arch=pythia", "arch.size=15b"]))


def test_experiment_takes_per_size_values():
    small, one_b, big = (compose(["experiment=pythia", f"arch.size={s}"]) for s in ("70m", "1b", "12b"))
    assert (small.trainer.lr, small.trainer.min_lr, small.trainer.precision, small.arch.init) == (
        1e-3,
        1e-4,
        "fp16",
        "neox",
    )
    assert (one_b.trainer.lr, one_b.trainer.precision) == (2.5e-4, "bf16")  # Pythia README: 1b trained in bf16
    assert big.arch.init == "neox-normal" and big.trainer.lr == 1.2e-4
    t = small.trainer
    assert (t.betas, t.eps, t.weight_decay, t.grad_clip, t.max_steps) == ([0.9, 0.95], 1e-8, 0.1, 1.0, 143000)
    assert (t.warmup_steps, t.warmup_fraction) == (None, 0.01)  # NeoX's "warmup": 0.01 of the run, 1430 steps
    assert small.seed == 1234 and small.trainer.ignore_eos_labels is False
    from parc.store.steps import checkpoint_steps

    expected = [0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000))
    assert checkpoint_steps(small.checkpoint, small.trainer.max_steps) == expected and len(expected) == 154


def reference_neox_lr(n, lr0=6e-4, min_lr=6e-5, warmup=1430, total=143000):
    """GPT-NeoX v1.0 AnnealingLR.get_lr, cosine, written out independently."""
    num_iters = min(n, total - warmup)
    if n <= warmup:
        return lr0 * num_iters / warmup
    lr = lr0 / 2.0 * (math.cos(math.pi * (num_iters - warmup) / total) + 1)
    return max(lr, min_lr)


def test_neox_schedule_matches_the_formula():
    from parc.training.optim import build_scheduler

    cfg = compose(["experiment=pythia", "arch.size=160m"])
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.trainer.lr)
    scheduler = build_scheduler(optimizer, cfg.trainer)
    lam = scheduler.lr_lambdas[0]
    points = {0: 0.0, 715: 3e-4, 1430: 6e-4, 71500: None, 140000: 6e-5, 142999: 6e-5}  # warmup, peak, mid, floor, last
    for n, known in points.items():
        got = 6e-4 * lam(n)
        assert got == pytest.approx(reference_neox_lr(n), rel=1e-12, abs=1e-15)
        if known is not None:
            assert got == pytest.approx(known, rel=1e-12)
    assert 6e-5 < 6e-4 * lam(71500) < 6e-4  # mid-run: on the cosine, above the floor
    for _ in range(3):  # the update k uses lr(k - 1)
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(reference_neox_lr(3), rel=1e-12)


def test_neox_decay_rule_decays_everything_but_layernorms_and_biases():
    from parc.training.optim import decay_parameter_names

    cfg = compose(["experiment=pythia", "data=demo", "arch.size=14m"])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0, device="meta")
    names = [n for n, _ in model.named_parameters()]
    expected = {n for n in names if not n.endswith(".bias") and "layernorm" not in n and "layer_norm" not in n}
    assert decay_parameter_names(model, "neox") == expected
    assert {"gpt_neox.embed_in.weight", "lm_head.weight"} <= expected  # embeddings decay
    assert decay_parameter_names(model, "transformers") == expected  # the Trainer's rule agrees on GPT-NeoX


def test_tanh_gelu_is_neox_bias_gelu():
    cfg = compose(["experiment=pythia", "data=demo", "arch.size=14m"])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0)
    x = torch.linspace(-6, 6, 1001)
    neox = x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))  # megatron/model/fused_bias_gelu.py
    act = model.gpt_neox.layers[0].mlp.act
    assert torch.allclose(act(x), neox, atol=1e-6)
    assert not torch.allclose(torch.nn.functional.gelu(x), neox, atol=1e-4)  # exact gelu differs


def family_std_ok(params, std):
    """Sample std within 6 standard errors of the target, mean within 6 standard errors of 0."""
    values = torch.cat([p.detach().flatten() for p in params]).double()
    n = values.numel()
    assert abs(values.mean()) < 6 * std / math.sqrt(n)
    assert abs(values.std() / std - 1) < 6 / math.sqrt(2 * n)


def assert_neox_init(model, inner, outer):
    named = dict(model.named_parameters())
    pick = lambda *suffixes: [p for n, p in named.items() if n.endswith(suffixes)]  # noqa: E731
    family_std_ok(pick("query_key_value.weight", "dense_h_to_4h.weight", "embed_in.weight", "lm_head.weight"), inner)
    family_std_ok(pick("attention.dense.weight", "dense_4h_to_h.weight"), outer)
    assert all(torch.all(p == 0) for n, p in named.items() if n.endswith(".bias"))
    assert all(torch.all(p == 1) for n, p in named.items() if "norm" in n and n.endswith(".weight"))


def test_neox_normal_init_is_neox_default():
    cfg = compose(["experiment=pythia", "data=demo", "arch.size=14m", "arch.init=neox-normal"])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0)
    assert_neox_init(model, 0.02, 0.02 / math.sqrt(2 * 6))


def test_fp16_is_refused_on_cpu_and_init_neox_off_pythia():
    from parc.training.strategy import accelerator_options

    cfg = compose(["experiment=pythia", "arch.size=14m"])
    with pytest.raises(ParcError, match="trainer.precision=fp16 needs a CUDA device"):
        accelerator_options(cfg.trainer, use_cpu=True)
    cfg = compose(["arch=rwkv", "experiment=demo", "arch.init=neox"])
    with pytest.raises(ParcError, match="applies to arch=pythia only"):
        archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0, device="meta")


def test_memory_plan_counts_adam_state_and_advises_fsdp():
    from parc.training.dryrun import dry_run_report
    from parc.training.memory import estimate

    model = torch.nn.Linear(64, 32)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 64)).sum().backward()
    optimizer.step()
    adam_bytes = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if t.dim())
    n = sum(p.numel() for p in model.parameters())
    config = OmegaConf.create({"hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 32})
    ddp, fsdp = (estimate(n, config, 1, 8, "fp32", strategy, 4) for strategy in ("ddp", "fsdp"))
    assert (ddp.weights, ddp.gradients, ddp.optimizer) == (4 * n, 4 * n, adam_bytes)
    assert (fsdp.gradients, fsdp.optimizer) == (n, adam_bytes / 4)
    big = dry_run_report(compose(["experiment=pythia", "arch.size=6.9b", "dry_run=true"]))
    small = dry_run_report(compose(["experiment=pythia", "arch.size=160m", "dry_run=true"]))
    assert "does NOT fit an 80 GB device under DDP: use trainer.strategy=fsdp" in big
    assert "fits an 80 GB device" in small and "tokens per step    2097152" in small


def losses(out):
    return [(r["step"], r["loss"], r["lr"]) for r in read_metrics(out / "metrics.jsonl")]


@pytest.mark.slow
@pytest.mark.timeout(900)  # two CLI runs with Hub pushes; slow on a loaded 2-core machine
def test_pythia_experiment_on_the_demo_trains_publishes_step_branches_and_resumes_bit_exactly(
    demo_root, tmp_path, hub_server
):
    """experiment=pythia arch.size=14m on the demo corpus (seq/batch overridden): NeoX schedule and init, step{N}
    branches on the (local) Hub with main = the final step, and a resume from hub:step2 on a fresh node."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out, repo = tmp_path / "run", "org/pythia-14m"
    args = [
        "experiment=pythia",
        "arch.size=14m",
        "data=demo",
        f"paths.root={demo_root}",
        f"output_dir={out}",
        "trainer.precision=fp32",
        "trainer.max_steps=4",
        "trainer.warmup_fraction=null",
        "trainer.warmup_steps=2",
        "trainer.global_batch_size=8",
        "trainer.micro_batch_size=4",
        "trainer.progress=false",
        f"hub.repo_id={repo}",
        "hub.retry_initial_s=0.05",
        "hub.max_commits_per_hour=360000",
    ]  # the default spaces commits 36 s apart
    result = run_cli("parc.train", *args, env=hub_server.env())
    assert result.returncode == 0, result.stderr[-3000:]
    rows = losses(out)
    assert [r[0] for r in rows] == list(range(1, 5))
    for step, _, lr in rows:  # update k used NeoX's lr(k - 1), W = 2, T = 4
        assert lr == pytest.approx(reference_neox_lr(step - 1, 1e-3, 1e-4, 2, 4), rel=1e-9, abs=1e-15)
    assert rows[-1][1] < rows[0][1]
    assert sorted(hub_server.state.repos[repo].branches) == ["main", "step0", "step1", "step2", "step4"]
    final = (out / "checkpoint-4" / "model.safetensors").read_bytes()
    assert hub_server.state.files(repo, "step4")["model.safetensors"] == final
    assert hub_server.state.files(repo, "main")["model.safetensors"] == final
    init = AutoModelForCausalLM.from_pretrained(out / "checkpoint-0")
    assert init.config.hidden_act == "gelu_pytorch_tanh" and init.config.vocab_size == 2048
    assert_neox_init(init, math.sqrt(2 / (5 * 128)), 2 / 6 / math.sqrt(128))  # small_init, wang_init at d 128, L 6

    fresh = tmp_path / "fresh"  # another node: only the Hub's step2 is there
    resumed = run_cli(
        "parc.train", *[a.replace(str(out), str(fresh)) for a in args], "resume=hub:step2", env=hub_server.env()
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert losses(fresh) == [r for r in rows if r[0] > 2]
    resumed_weights, original = (load_file(d / "checkpoint-4" / "model.safetensors") for d in (fresh, out))
    assert resumed_weights.keys() == original.keys()
    assert all(torch.equal(resumed_weights[k], original[k]) for k in original)


def test_slurm_array_covers_the_polypythias_grid(tmp_path):
    """slurm/train_array.sbatch with SIZES: task i -> one (size, seed) cell; 5 sizes x 9 seeds = tasks 0..44."""
    import itertools
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "slurm" / "train_array.sbatch"
    env = dict(
        os.environ,
        ARCHS="pythia",
        SIZES="14m 31m 70m 160m 410m",
        SEEDS="1 2 3 4 5 6 7 8 9",
        PARC_TRAIN_CMD="echo TRAIN",
        SLURM_SUBMIT_DIR=str(tmp_path),
    )
    cells = []
    for task in range(46):
        result = subprocess.run(
            ["bash", str(script), "experiment=pythia"],
            env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if task == 45:
            assert result.returncode == 2 and "--array=0-44" in result.stderr
            break
        assert result.returncode == 0, result.stderr
        line = next(ln for ln in result.stdout.splitlines() if ln.startswith("TRAIN "))
        args = dict(a.split("=", 1) for a in line.split()[1:])
        cells.append((args["arch.size"], args["seed"]))
    assert cells == [(size, seed) for size, seed in itertools.product("14m 31m 70m 160m 410m".split(), "123456789")]

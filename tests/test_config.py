"""Every config file composes; the schema refuses typos and wrong types; derived quantities; schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from parc.config import CONFIG_DIR, cell_name, compose, parse_cell_name
from parc.errors import ParcError
from parc.store.steps import checkpoint_steps
from parc.training.runconfig import Plan, portable_config, validate

GROUPS = ["arch", "data", "trainer", "checkpoint", "hub", "logger", "experiment", "intervention"]


def every_option():
    for group in GROUPS:
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            yield group, path.stem


@pytest.mark.parametrize("group,option", list(every_option()))
def test_every_config_file_composes_and_validates(group, option):
    # an intervention starts after a step: a branch's checkpoint, or intervention.step for a run from scratch
    cfg = compose([f"{group}={option}", *(["intervention.step=100"] if group == "intervention" else [])])
    validate(cfg)
    Plan.build(cfg)


def test_configs_are_package_data():
    """The configs live inside the package (so a wheel carries them); every group the test above walks has options."""
    import parc

    assert CONFIG_DIR == Path(parc.__file__).resolve().parent / "configs"
    assert all(list((CONFIG_DIR / group).glob("*.yaml")) for group in GROUPS)
    assert {path.parent.name for path in CONFIG_DIR.glob("*/*.yaml")} == set(GROUPS) | {"eval"}


@pytest.mark.parametrize("overrides", [["experiment=demo", "dry_run=true"], []])
def test_a_missing_config_directory_is_named_first(tmp_path, monkeypatch, overrides):
    """A broken install (no configs/) is said in one line before any check of the user's overrides."""
    import parc.config

    missing = tmp_path / "site-packages" / "parc" / "configs"
    monkeypatch.setattr(parc.config, "CONFIG_DIR", missing)
    with pytest.raises(ParcError) as info:
        compose(overrides)
    message = str(info.value)
    assert "\n" not in message and str(missing) in message and "reinstall parc" in message
    assert "experiment" not in message


def test_a_missing_config_directory_stops_hydras_command_line(tmp_path, monkeypatch, capsys):
    """`python -m parc.train --cfg job` (Hydra's own command line) says the same, exit 2, not Hydra's error."""
    import parc.train

    monkeypatch.setattr(parc.train, "CONFIG_DIR", tmp_path / "configs")
    with pytest.raises(SystemExit) as info:
        parc.train.main(["--cfg", "job"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert str(tmp_path / "configs") in err and "reinstall parc" in err


def test_every_launcher_config_is_valid_yaml():
    for path in sorted((CONFIG_DIR / "hydra" / "launcher").glob("*.yaml")):
        assert OmegaConf.load(path) is not None, path


def test_defaults_are_the_parc_recipe():
    cfg = compose([])
    plan = Plan.build(cfg)
    assert (cfg.arch.name, cfg.data.name, cfg.seed, cfg.data.shard) == ("pythia", "openwebtext", 0, 0)
    assert plan.max_steps == 4000 and plan.global_batch_size == 512 and plan.seq_len == 1024
    assert plan.accumulation == 16 and plan.tokens_per_step == 524_288
    assert plan.total_tokens == 2_097_152_000 and plan.sequences_per_shard == 2_048_000
    assert (cfg.trainer.lr, list(cfg.trainer.betas), cfg.trainer.eps) == (6e-4, [0.9, 0.999], 1e-8)
    assert (cfg.trainer.weight_decay, cfg.trainer.warmup_steps, cfg.trainer.grad_clip) == (0.1, 100, 1.0)
    assert cfg.trainer.precision == "fp32" and not cfg.trainer.tf32
    assert plan.checkpoint_steps == list(range(0, 4001, 10))
    assert cfg.data.vocab_size == 50277 and cfg.data.tokenizer == "EleutherAI/pythia-160m"


def test_output_dir_is_derived_without_timestamps():
    a = compose(["arch=mamba", "seed=3", "data.shard=1"])
    b = compose(["arch=mamba", "seed=3", "data.shard=1"])
    assert a.output_dir == b.output_dir and a.output_dir.endswith("parc/mamba-seed3-shard1")
    # the yaml interpolation and the one Python helper name a cell alike, and the parser reads it back
    for arch, seed, shard in (("mamba", 3, 1), ("rwkv", 12, 0)):
        cfg = compose([f"arch={arch}", f"seed={seed}", f"data.shard={shard}"])
        assert Path(cfg.output_dir).name == cell_name(arch, seed, shard)
        assert parse_cell_name(Path(cfg.output_dir).name) == (arch, seed, shard)
    assert parse_cell_name("pythia-160m-seed0") is None and parse_cell_name("mamba-seed1-shard2x") is None
    assert compose(["output_dir=/tmp/x"]).output_dir == "/tmp/x"


def test_accumulation_adapts_to_world_size_and_refuses_indivisible():
    cfg = compose(["trainer.micro_batch_size=32"])
    assert Plan.build(cfg, world_size=4).accumulation == 4
    with pytest.raises(ParcError, match="not divisible"):
        Plan.build(compose(["trainer.micro_batch_size=24"]))
    with pytest.raises(ParcError, match="not divisible"):
        Plan.build(compose(["trainer.micro_batch_size=32"]), world_size=3)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["arch=foo"], "unknown arch 'foo'.*mamba, pythia, rwkv"),
        (["experiment=nope"], "unknown experiment 'nope'"),
        (["trainer.max_stepz=3"], "unknown config key 'trainer.max_stepz'"),
        (["trainer.max_steps=abc"], "bad value for trainer.max_steps"),
        (["seed=x"], "bad value for seed"),
    ],
)
def test_composition_errors_are_one_line(overrides, message):
    with pytest.raises(ParcError, match=message) as info:
        compose(overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["trainer.max_steps=-5"], "trainer.max_steps=-5 must be a positive integer"),
        (["trainer.precision=fp8"], "trainer.precision"),
        (["checkpoint.every=0"], "checkpoint.every"),
        (["resume=sometimes"], "resume='sometimes'"),
        (["data.shard=-1"], "data.shard"),
    ],
)
def test_validation_errors(overrides, message):
    with pytest.raises(ParcError, match=message):
        validate(compose(overrides))


def test_checkpoint_schedules_always_hold_step_zero_and_the_end():
    cfg = compose(["checkpoint=pythia"])
    pythia = checkpoint_steps(cfg.checkpoint, 4000)
    assert len(pythia) == 154  # as many as Pythia published
    assert pythia[:11] == [0, 1, 2, 4, 8, 16, 28, 32, 56, 64, 84]
    assert pythia[-1] == 4000
    every = checkpoint_steps(compose(["checkpoint.every=300"]).checkpoint, 1000)
    assert every == [0, 300, 600, 900, 1000]
    listed = compose(["checkpoint.schedule=list", "checkpoint.steps=[10,20,40,80]", "trainer.max_steps=100"])
    assert checkpoint_steps(listed.checkpoint, 100) == [0, 10, 20, 40, 80, 100]


@pytest.mark.parametrize("experiment", ["demo", "mini_parc"])  # data_files: one file; a list of two
def test_portable_config_has_no_local_paths(tmp_path, experiment):
    import parc

    cfg = compose([f"experiment={experiment}", f"paths.root={tmp_path}"])
    values = portable_config(cfg)
    text = str(values)
    assert str(tmp_path) not in text and str(Path(parc.__file__).parent) not in text
    files = values["data"]["data_files"]
    assert files == {"demo": "shakespeare.jsonl.gz", "mini_parc": ["kjv.jsonl.gz", "shakespeare.jsonl.gz"]}[experiment]
    by_split = compose(["experiment=demo", f"paths.root={tmp_path}", "data.data_files={train: /x/a.json}"])
    assert portable_config(by_split)["data"]["data_files"] == {"train": "a.json"}  # datasets' third form

"""Raw GPT-NeoX checkpoints: Parc's reader (parc.store.neox_raw) against files written by the real `deepspeed`
package (slow: 2 gloo ranks) and by a DeeperSpeed-0.3.15 writer in this file (no library writes that format on a
CPU), the half() cross-check, model-parallel merging, the restricted unpickler, `resume=neox:` and `parc.export hf`."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from parc.errors import ParcError
from parc.store.neox_raw import read_raw

from conftest import run_cli, run_cli_cases

HERE = Path(__file__).resolve().parent
LAYER_KEYS = [
    "input_layernorm.weight",
    "input_layernorm.bias",
    "attention.query_key_value.weight",
    "attention.query_key_value.bias",
    "attention.dense.weight",
    "attention.dense.bias",
    "post_attention_layernorm.weight",
    "post_attention_layernorm.bias",
    "mlp.dense_h_to_4h.weight",
    "mlp.dense_h_to_4h.bias",
    "mlp.dense_4h_to_h.weight",
    "mlp.dense_4h_to_h.bias",
]
TINY = {"hidden": 16, "layers": 2, "heads": 4, "vocab": 64}


# --- the test's own NeoX model and the DeeperSpeed 0.3.15 writer --------------------------------------------------


def neox_params(hidden, layers, vocab, seed=0, scale=1.0):
    """NeoX pipeline names in module order -> (fp32 master, exp_avg, exp_avg_sq), random."""
    g = torch.Generator().manual_seed(seed)
    shapes = [("0.word_embeddings.weight", (vocab, hidden))]
    for i in range(layers):
        sizes = {"input_layernorm": (hidden,), "post_attention_layernorm": (hidden,)}
        for key in LAYER_KEYS:
            module, kind = key.rsplit(".", 1)
            out = {
                "attention.query_key_value": 3 * hidden,
                "attention.dense": hidden,
                "mlp.dense_h_to_4h": 4 * hidden,
                "mlp.dense_4h_to_h": hidden,
            }.get(module)
            inp = {
                "attention.query_key_value": hidden,
                "attention.dense": hidden * scale,
                "mlp.dense_h_to_4h": hidden,
                "mlp.dense_4h_to_h": 4 * hidden * scale,
            }.get(module)
            shape = sizes.get(module) or ((out, int(inp)) if kind == "weight" else (out,))
            shapes.append((f"{i + 2}.{key}", shape))
    shapes += [
        (f"{layers + 3}.norm.weight", (hidden,)),
        (f"{layers + 3}.norm.bias", (hidden,)),
        (f"{layers + 4}.final_linear.weight", (vocab, hidden)),
    ]
    return OrderedDict(
        (n, (torch.randn(s, generator=g) * 0.1, torch.randn(s, generator=g) * 1e-3, torch.rand(s, generator=g) * 1e-5))
        for n, s in shapes
    )


def hf_name(name, layers):
    index, rest = name.split(".", 1)
    index = int(index)
    if index == 0:
        return "gpt_neox.embed_in.weight"
    if index == layers + 3:
        return "gpt_neox.final_layer_norm." + rest.split(".")[1]
    if index == layers + 4:
        return "embed_out.weight"
    return f"gpt_neox.layers.{index - 2}.{rest}"


def scaler_class(monkeypatch):
    """A class pickled as deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler (modules faked for the pickling)."""
    cls = type("DynamicLossScaler", (), {"__module__": "deepspeed.runtime.fp16.loss_scaler"})
    for name in ("deepspeed", "deepspeed.runtime", "deepspeed.runtime.fp16", "deepspeed.runtime.fp16.loss_scaler"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["deepspeed.runtime.fp16.loss_scaler"].DynamicLossScaler = cls
    return cls


def write_0315(
    tag: Path,
    params,
    dp,
    bucket,
    monkeypatch,
    mp=0,
    mp_size=1,
    iteration=7,
    heads=4,
    positions=64,
    schedule=None,
    batch=8,
):
    """A DeeperSpeed 0.3.15 pipeline + elastic ZeRO-1 checkpoint of one MP rank (stage1.py's partitioning:
    C comm intervals x dp sub-partitions of size S, sub-partition i = rank i % dp, interval i // dp, padding trimmed)."""
    tag.mkdir(parents=True, exist_ok=True)
    no_decay = [
        n
        for n in params
        if n.endswith(".bias") or n.split(".")[-2] in {"input_layernorm", "post_attention_layernorm", "norm"}
    ]
    groups = [[n for n in params if n not in no_decay], no_decay]
    subs = [[[] for _ in groups] for _ in range(dp)]
    states = [[[] for _ in groups] for _ in range(dp)]
    intervals = []
    for g, names in enumerate(groups):
        flat = [torch.cat([params[n][k].flatten() for n in names]) for k in range(3)]
        total = len(flat[0])
        part, comm = math.ceil(total / dp), int(bucket // dp)
        count, size = (1, part) if part <= comm else (math.ceil(part / comm), comm)
        intervals.append(count)
        for i in range(count * dp):
            lo, hi = i * size, min((i + 1) * size, total)
            piece = [f[lo : max(lo, hi)].clone() for f in flat]
            subs[i % dp][g].append(piece[0])
            states[i % dp][g].append({"exp_avg": piece[1], "exp_avg_sq": piece[2]})
    scaler = scaler_class(monkeypatch)()
    scaler.__dict__.update(
        cur_scale=2048.0,
        cur_iter=iteration,
        last_overflow_iter=3,
        scale_factor=2.0,
        scale_window=1000,
        min_scale=1,
        delayed_shift=2,
        cur_hysteresis=2,
        consecutive_hysteresis=False,
        raise_error_at_min_scale=True,
    )
    shapes = OrderedDict((n, torch.Size(v[0].shape)) for n, v in params.items())
    for r in range(dp):
        torch.save(
            {
                "optimizer_state_dict": {
                    "loss_scaler": scaler,
                    "dynamic_loss_scale": True,
                    "overflow": False,
                    "base_optimizer_state": states[r],
                    "zero_stage": 1,
                    "partition_count": dp,
                    "num_comm_intervals_per_group": intervals,
                    "local_sub_partitions_of_fp32_groups": subs[r],
                },
                "param_shapes": shapes,
            },
            tag / f"zero_pp_rank_{r}_mp_rank_{mp:02d}_optim_states.pt",
        )
    layers = {}
    for name, (master, _, _) in params.items():
        index, key = name.split(".", 1)
        layers.setdefault(int(index), OrderedDict())[key] = master.half()
        if key == "attention.dense.weight":
            layers[int(index)]["attention.rotary_emb.inv_freq"] = torch.ones(2, dtype=torch.float16)
    for index, tensors in layers.items():
        torch.save(tensors, tag / f"layer_{index:02d}-model_{mp:02d}-model_states.pt")
    hidden, vocab = params["0.word_embeddings.weight"][0].shape[1], params["0.word_embeddings.weight"][0].shape[0]
    torch.save(
        {
            "module": None,
            "optimizer": None,
            "csr_tensor_module_names": set(),
            "skipped_steps": 1,
            "lr_scheduler": {
                "start_lr": 1e-3,
                "warmup_iter": 1.0,
                "num_iters": iteration - 1,
                "decay_style": "cosine",
                "end_iter": 100,
                "min_lr": 1e-4,
                **(schedule or {}),
            },
            "global_steps": iteration,
            "global_samples": iteration * batch,
            "dp_world_size": dp,
            "mp_world_size": mp_size,
            "iteration": iteration,
            "args": {
                "num_layers": len(layers) - 3,
                "hidden_size": hidden,
                "num_attention_heads": heads,
                "padded_vocab_size": vocab * mp_size,
                "max_position_embeddings": positions,
                "model_parallel_size": mp_size,
            },
            "random_rng_state": random.getstate(),
            "np_rng_state": np.random.get_state(),
            "torch_rng_state": torch.get_rng_state(),
        },
        tag / f"mp_rank_{mp:02d}_model_states.pt",
    )
    return intervals


# --- DeeperSpeed 0.3.15 format (fast) ------------------------------------------------------------------------------


def test_deeperspeed_0315_interleaved_sub_partitions_round_trip(tmp_path, monkeypatch):
    params = neox_params(**{k: TINY[k] for k in ("hidden", "layers", "vocab")})
    intervals = write_0315(tmp_path / "save" / "global_step7", params, dp=2, bucket=2800, monkeypatch=monkeypatch)
    (tmp_path / "save" / "latest").write_text("global_step7")
    assert (
        intervals[0] == 3
    )  # group 0 (decayed weights, 8192 values, padded to 8400) spans 3 interleaved intervals of 2 ranks
    raw = read_raw(tmp_path / "save")
    assert (raw.format, raw.dp, raw.mp, raw.iteration, raw.num_iters) == ("deeperspeed-0.3.15", 2, 1, 7, 6)
    assert raw.loss_scale["cur_scale"] == 2048.0 and raw.train_batch_size == 8
    assert "deepspeed" not in sys.modules or not hasattr(sys.modules["deepspeed"], "__file__")
    for name, (master, avg, avg_sq) in params.items():
        hf = hf_name(name, TINY["layers"])
        assert torch.equal(raw.weights[hf], master), name
        assert torch.equal(raw.moments[hf]["exp_avg"], avg) and torch.equal(raw.moments[hf]["exp_avg_sq"], avg_sq)
    assert len(raw.checked_halves) == len(params)

    # concatenating each rank's intervals in file order (the wrong reassembly) would scramble the weights
    file0 = torch.load(tmp_path / "save/global_step7/zero_pp_rank_0_mp_rank_00_optim_states.pt", weights_only=False)
    naive = torch.cat(file0["optimizer_state_dict"]["local_sub_partitions_of_fp32_groups"][0])
    group0 = torch.cat([m.flatten() for n, (m, _, _) in params.items() if n.endswith("weight") and "norm" not in n])
    assert not torch.equal(naive, group0[: len(naive)])


def test_a_layer_tensor_that_is_not_its_master_half_is_refused_by_name(tmp_path, monkeypatch):
    params = neox_params(16, 2, 64)
    tag = tmp_path / "global_step7"
    write_0315(tag, params, dp=2, bucket=2800, monkeypatch=monkeypatch)
    layer = torch.load(tag / "layer_03-model_00-model_states.pt")
    layer["mlp.dense_4h_to_h.weight"][0, 0] += 0.5
    torch.save(layer, tag / "layer_03-model_00-model_states.pt")
    with pytest.raises(ParcError, match=r"weight 3\.mlp\.dense_4h_to_h\.weight .* not its fp32 master"):
        read_raw(tag)


def test_model_parallel_ranks_merge_as_neox_converters_do(tmp_path, monkeypatch):
    shards = [neox_params(16, 1, 32, seed=s, scale=0.5) for s in (1, 2)]  # vocab, QKV, h_to_4h split; row in-dim split
    for mp, params in enumerate(shards):
        write_0315(tmp_path / "global_step7", params, dp=2, bucket=1000, monkeypatch=monkeypatch, mp=mp, mp_size=2)
    raw = read_raw(tmp_path / "global_step7")
    assert raw.mp == 2
    for name in shards[0]:
        a, b = (s[name][0] for s in shards)
        key = name.split(".", 1)[1]
        if key in ("attention.dense.weight", "mlp.dense_4h_to_h.weight"):
            want = torch.cat([a, b], 1)
        elif key in ("attention.dense.bias", "mlp.dense_4h_to_h.bias"):
            want = a + b  # each rank adds its own bias before the all-reduce
        elif "norm" in key:
            want = (a + b) / 2
        else:
            want = torch.cat([a, b], 0)
        assert torch.allclose(raw.weights[hf_name(name, 1)], want, rtol=0, atol=1e-7), name
    assert raw.weights["gpt_neox.embed_in.weight"].shape == (64, 16)


def test_the_no_pipeline_form_reads_module_and_flat_groups(tmp_path):
    params = neox_params(16, 1, 32)
    no_decay = [n for n in params if n.endswith(".bias") or "norm" in n]
    groups = [[n for n in params if n not in no_decay], no_decay]
    flat = [[torch.cat([params[n][k].flatten() for n in names]) for k in range(3)] for names in groups]
    module = {f"sequential.{n}": v[0].half() for n, v in params.items()}
    optimizer = {
        "fp32_groups_flat": [f[0] for f in flat],
        "cur_scale": 512.0,
        "cur_iter": 5,
        "last_overflow_iter": 1,
        "scale_factor": 2.0,
        "scale_window": 1000,
        "dynamic_loss_scale": True,
        "optimizer_state_dict": {
            "state": {g: {"step": 5, "exp_avg": f[1], "exp_avg_sq": f[2]} for g, f in enumerate(flat)},
            "param_groups": [],
        },
    }
    (tmp_path / "global_step5").mkdir()
    torch.save(
        {
            "module": module,
            "optimizer": optimizer,
            "iteration": 5,
            "global_steps": 5,
            "global_samples": 40,
            "lr_scheduler": {"num_iters": 5},
        },
        tmp_path / "global_step5" / "mp_rank_00_model_states.pt",
    )
    raw = read_raw(tmp_path / "global_step5")
    assert raw.format == "sequential" and raw.loss_scale["cur_scale"] == 512.0
    for name, (master, avg, _) in params.items():
        assert torch.equal(raw.weights[hf_name(name, 1)], master)
        assert torch.equal(raw.moments[hf_name(name, 1)]["exp_avg"], avg)


class Exploit:
    def __reduce__(self):
        return (subprocess.call, (["touch", "/tmp/parc-neox-exploit"],))


def test_any_other_class_in_a_file_is_refused_without_running_it(tmp_path):
    from parc.store.neox_pickle import load_untrusted

    torch.save({"x": Exploit()}, tmp_path / "bad.pt")
    with pytest.raises(ParcError, match="class subprocess.call"):
        load_untrusted(tmp_path / "bad.pt")
    assert not Path("/tmp/parc-neox-exploit").exists()
    torch.save({"ns": __import__("argparse").Namespace(a=1)}, tmp_path / "ns.pt")
    with pytest.raises(ParcError, match="argparse.Namespace"):
        load_untrusted(tmp_path / "ns.pt")


def test_export_hf_loads_with_from_pretrained_and_gives_the_reader_s_logits(tmp_path, monkeypatch):
    from transformers import GPTNeoXForCausalLM

    from parc.hub.neoxhf import build_model

    params = neox_params(16, 2, 64)
    write_0315(tmp_path / "global_step7", params, dp=2, bucket=2800, monkeypatch=monkeypatch)
    results = run_cli_cases(
        "parc.export",
        [
            ["hf", str(tmp_path / "global_step7"), str(tmp_path / "fp32")],
            ["hf", str(tmp_path / "global_step7"), str(tmp_path / "fp16"), "dtype=fp16"],
            ["hf", str(tmp_path / "nowhere"), str(tmp_path / "x")],
        ],
    )
    assert [r.returncode for r in results] == [0, 0, 2], [r.stderr[-500:] for r in results]
    assert results[2].stderr.startswith("error: ") and not (tmp_path / "x").exists()
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    reference = build_model(read_raw(tmp_path / "global_step7"))
    loaded = GPTNeoXForCausalLM.from_pretrained(tmp_path / "fp32")
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, reference(ids).logits)
    half = GPTNeoXForCausalLM.from_pretrained(tmp_path / "fp16", dtype=torch.float16)
    layer = torch.load(tmp_path / "global_step7" / "layer_02-model_00-model_states.pt")
    assert torch.equal(
        half.gpt_neox.layers[0].attention.query_key_value.weight, layer["attention.query_key_value.weight"]
    )


# --- genuine files from the deepspeed package (slow: two gloo ranks) -----------------------------------------------

RUN = [
    "experiment=demo",
    "trainer.max_steps=8",
    "checkpoint.every=3",
    "trainer.progress=false",
    "trainer.lr_schedule=neox",
    "trainer.min_lr=2e-4",
    "trainer.warmup_steps=null",
    "trainer.warmup_fraction=0.25",
    "trainer.weight_decay_rule=neox",
    "trainer.weight_decay=0.1",
    "trainer.betas=[0.9,0.95]",
    "trainer.global_batch_size=4",
    "trainer.micro_batch_size=4",
]


@pytest.fixture(scope="module")
def deepspeed_checkpoint(tmp_path_factory):
    """3 fp16 ZeRO-1 steps of the demo's tiny Pythia shapes on 2 data-parallel ranks, saved by deepspeed itself."""
    pytest.importorskip("deepspeed", reason="the neox extra (DS_BUILD_OPS=0 pip install deepspeed) is not installed")
    root = tmp_path_factory.mktemp("deepspeed")
    spec = {
        "hidden": 128,
        "layers": 2,
        "heads": 4,
        "vocab": 2048,
        "steps": 3,
        "dp": 2,
        "lr": 2e-3,
        "min_lr": 2e-4,
        "warmup_iter": 2.0,
        "end_iter": 8,
        "seq": 16,
        "micro": 2,
    }
    (root / "spec.json").write_text(json.dumps(spec))
    result = subprocess.run(
        [sys.executable, str(HERE / "neox_ds_writer.py"), str(root / "save"), str(root / "spec.json")],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "save"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_reader_gives_what_deepspeed_holds_in_memory(deepspeed_checkpoint, tmp_path):
    captured = torch.load(deepspeed_checkpoint / "captured.pt")
    raw = read_raw(deepspeed_checkpoint)
    assert (raw.format, raw.dp, raw.iteration, raw.num_iters) == ("deepspeed", 2, 3, captured["num_iters"])
    assert raw.loss_scale["cur_scale"] == captured["loss_scale"] and len(raw.checked_halves) == 28
    for name, tensors in captured["params"].items():
        hf = hf_name(name, 2)
        assert torch.equal(raw.weights[hf], tensors["master"]), name
        assert all(torch.equal(raw.moments[hf][k], tensors[k]) for k in ("exp_avg", "exp_avg_sq")), name
    copy = tmp_path / "global_step3"
    shutil.copytree(deepspeed_checkpoint / "global_step3", copy)
    layer = torch.load(copy / "layer_00-model_00-model_states.pt")
    layer["word_embeddings.weight"][5, 7] = -layer["word_embeddings.weight"][5, 7] + 1
    torch.save(layer, copy / "layer_00-model_00-model_states.pt")
    with pytest.raises(ParcError, match="0.word_embeddings.weight"):
        read_raw(copy)


def patch_checkpoint(checkpoint: Path, captured: dict) -> None:
    """Put DeepSpeed's in-memory masters and moments (Adam step 1, as NeoX resumes) into a Parc checkpoint."""
    from safetensors.torch import load_file, save_file

    from parc.store.fileio import sha256_file
    from parc.training.optim import neox_decay_parameter_names

    weights = load_file(checkpoint / "model.safetensors")
    by_hf = {hf_name(n, 2): v for n, v in captured["params"].items()}
    by_hf["lm_head.weight"] = by_hf["embed_out.weight"]  # transformers 5's name in the model (the file keeps embed_out)
    save_file(
        {n: by_hf[n]["master"].contiguous() for n in weights},
        checkpoint / "model.safetensors",
        metadata={"format": "pt"},
    )
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    decay = neox_decay_parameter_names(model)
    names = [n for n, _ in model.named_parameters()]
    order = [n for n in names if n in decay] + [n for n in names if n not in decay]
    optimizer = torch.load(checkpoint / "training_state" / "optimizer.pt")
    optimizer["state"] = {
        i: {
            "step": torch.tensor(1.0),
            "exp_avg": by_hf[n]["exp_avg"].clone(),
            "exp_avg_sq": by_hf[n]["exp_avg_sq"].clone(),
        }
        for i, n in enumerate(order)
    }
    torch.save(optimizer, checkpoint / "training_state" / "optimizer.pt")
    manifest = json.loads((checkpoint / "parc_checkpoint.json").read_text())
    for rel in ("model.safetensors", "training_state/optimizer.pt"):
        manifest["files"][rel] = {"size": (checkpoint / rel).stat().st_size, "sha256": sha256_file(checkpoint / rel)}
    (checkpoint / "parc_checkpoint.json").write_text(json.dumps(manifest))


def losses(run: Path) -> dict:
    return {
        row["step"]: row["loss"]
        for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if "loss" in row
    }


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_continuing_the_raw_checkpoint_equals_continuing_an_equivalent_parc_checkpoint(
    deepspeed_checkpoint, demo_root, tmp_path
):
    captured = torch.load(deepspeed_checkpoint / "captured.pt")
    base = [*RUN, f"paths.root={demo_root}"]
    # A: a Parc run of the same recipe, for a checkpoint-3 with this run's identity; C: it, holding DeepSpeed's state
    for args in (
        [*base, f"output_dir={tmp_path / 'A'}", "resume=none"],
        [*base, f"output_dir={tmp_path / 'B'}", f"resume=neox:{deepspeed_checkpoint}"],
    ):
        result = run_cli("parc.train", *args)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "28 layer tensors equal their fp32 masters" in result.stdout
    (tmp_path / "C").mkdir()
    shutil.copytree(tmp_path / "A" / "checkpoint-3", tmp_path / "C" / "checkpoint-3")
    patch_checkpoint(tmp_path / "C" / "checkpoint-3", captured)
    result = run_cli("parc.train", *base, f"output_dir={tmp_path / 'C'}", "resume=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    from_raw, from_parc = losses(tmp_path / "B"), losses(tmp_path / "C")
    assert sorted(from_raw) == [4, 5, 6, 7, 8] and from_raw == from_parc
    assert from_raw[4] != losses(tmp_path / "A")[4]  # DeepSpeed's weights, not A's
    manifest = json.loads((tmp_path / "B" / "checkpoint-6" / "parc_checkpoint.json").read_text())
    assert manifest["init_from"]["source"] == "neox:save/global_step3" and manifest["step"] == 6

    # the same command again is refused (the run exists); another architecture is refused in one line
    again = run_cli_cases(
        "parc.train",
        [
            [*base, f"output_dir={tmp_path / 'B'}", f"resume=neox:{deepspeed_checkpoint}"],
            [
                *base,
                f"output_dir={tmp_path / 'D'}",
                "arch.tiny.num_hidden_layers=3",
                f"resume=neox:{deepspeed_checkpoint}",
            ],
        ],
    )
    assert [r.returncode for r in again] == [2, 2]
    assert "already holds a run: resume=auto continues it" in again[0].stderr
    assert "num_layers=2, this run's architecture has 3" in again[1].stderr

"""FLOPs per token against parameter counts, the peak-FLOPs table and MFU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from parc import archs
from parc.config import compose
from parc.training import perf


def full_size(name):
    cfg = compose([f"arch={name}"])
    return archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0, device="meta")


@pytest.mark.parametrize("name", ["pythia", "mamba", "rwkv"])
def test_flops_per_token_is_six_times_the_parameters_that_multiply(name):
    """Every weight that takes part in a matmul costs 2 FLOPs per token forward and 4 backward.

    An untied input embedding is a lookup (no FLOPs); norms, biases and per-channel vectors are
    < 1 % of the parameters. So, with the sequence terms vanishing at seq_len 1, FLOPs/token must be
    6 x (parameters - untied input embedding) within ~2 % (Mamba's scan adds ~2 %, RWKV's WKV 0.1 %).
    """
    model = full_size(name)
    multiplying = archs.count_parameters(model)
    if not model.config.tie_word_embeddings:
        multiplying -= model.get_input_embeddings().weight.numel()
    flops = archs.get_spec(name).flops_per_token(model.config, 1)
    assert 0.995 <= flops / (6 * multiplying) <= 1.025


@pytest.mark.parametrize("name", ["pythia", "mamba", "rwkv"])
def test_only_attention_grows_with_the_sequence(name):
    """Attention scores cost 12 x layers x d per token per position (QK^T and AV, forward + backward);
    the recurrent models carry a fixed-size state, so their FLOPs/token do not depend on seq_len."""
    model = full_size(name)
    spec, config = archs.get_spec(name), model.config
    growth = spec.flops_per_token(config, 2048) - spec.flops_per_token(config, 1024)
    expected = 12 * config.num_hidden_layers * 1024 * config.hidden_size if name == "pythia" else 0
    assert growth == expected


@pytest.mark.parametrize(
    "device_name, precision, peak",
    [
        ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
        ("NVIDIA A100 80GB PCIe", "tf32", 156e12),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4e12),
        ("NVIDIA H100 PCIe", "bf16", 756e12),
        ("NVIDIA H100 NVL", "fp32", 60e12),
        ("NVIDIA H200", "tf32", 494.7e12),
        ("NVIDIA H200 NVL", "bf16", 835.5e12),
        ("Tesla T4", "bf16", None),
    ],
)
def test_peak_flops_by_device_name(device_name, precision, peak):
    assert perf.peak_flops(device_name, precision) == peak


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision 'int8'"):
        perf.peak_flops("NVIDIA H100 80GB HBM3", "int8")


def test_mfu_is_not_available_on_cpu():
    assert perf.mfu(1e9, 1e5, torch.device("cpu"), "fp32") is None
    assert perf.format_mfu(None) == "n/a"


def test_mfu_divides_model_flops_by_the_peak_of_all_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert perf.mfu(1e9, 494.7e3, "cuda", "bf16") == pytest.approx(0.5)
    assert perf.mfu(1e9, 494.7e3, "cuda", "bf16", num_devices=2) == pytest.approx(0.25)
    assert perf.format_mfu(0.5) == "50.0%"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert perf.mfu(1e9, 1e5, "cuda", "bf16") is None


def test_fp32_counts_as_tf32_when_pytorch_runs_it_so(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "matmul", SimpleNamespace(allow_tf32=False))
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    assert perf.matmul_precision("fp32") == "fp32"
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert perf.matmul_precision("fp32") == "tf32"
    assert perf.matmul_precision("bf16") == "bf16"
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    monkeypatch.setattr(torch.backends.cuda, "matmul", SimpleNamespace(allow_tf32=True))
    assert perf.matmul_precision("fp32") == "tf32"

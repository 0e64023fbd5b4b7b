"""The fast paths compute transformers' function: same logits and gradients, same checkpoints, stable WKV/scan.

Errors are norm-relative, ||fast - reference|| / ||reference||, over whole tensors, fp32 on CPU,
tiny sizes with random init (the `demo` experiment's arch sizes).
"""

from __future__ import annotations

import pytest
import torch
from transformers.models.mamba import modeling_mamba
from transformers.models.rwkv import modeling_rwkv

from parc import archs
from parc.config import compose
from parc.errors import ParcError
from parc.kernels import selective_scan as scan_module
from parc.kernels import wkv as wkv_module

CPU = torch.device("cpu")
FAST = {"pythia": "sdpa attention", "mamba": "torch-scan", "rwkv": "chunked-wkv"}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def tiny_model(name: str, seed: int = 0) -> torch.nn.Module:
    cfg = compose(["experiment=demo", f"arch={name}"])
    return archs.build_model(cfg.arch, cfg.data.vocab_size, seed=seed)


def logits_and_grads(model, input_ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=input_ids, labels=input_ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", sorted(FAST))
def test_fast_path_matches_reference_logits_and_gradients(name):
    model = tiny_model(name).train()
    spec = archs.get_spec(name)
    # seq 100: not a multiple of any chunk length, so the padded tail is exercised too.
    input_ids = torch.randint(0, model.config.vocab_size, (3, 100), generator=torch.Generator().manual_seed(1))
    assert spec.apply_fast_path(model, "reference", CPU).startswith("reference")
    ref_logits, ref_grads = logits_and_grads(model, input_ids)
    assert FAST[name] in spec.apply_fast_path(model, "auto", CPU)
    logits, grads = logits_and_grads(model, input_ids)

    assert relative_error(logits, ref_logits) < 1e-5
    assert grads.keys() == ref_grads.keys() and len(grads) == len(list(model.parameters()))
    worst = max(grads, key=lambda n: relative_error(grads[n], ref_grads[n]))
    assert relative_error(grads[worst], ref_grads[worst]) < 1e-5, worst


@pytest.mark.parametrize("name", sorted(FAST))
def test_fast_path_keeps_a_standard_hf_checkpoint(name, tmp_path):
    model = tiny_model(name)
    before = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    archs.get_spec(name).apply_fast_path(model, "auto", CPU)
    assert {k: (v.shape, v.dtype) for k, v in model.state_dict().items()} == before
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)  # the plain transformers class, nothing of Parc's
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("name", sorted(FAST))
def test_unknown_fast_path_is_refused_with_the_choices(name):
    with pytest.raises(ParcError, match=r"unknown fast_path 'warp'.*auto, reference"):
        archs.get_spec(name).apply_fast_path(torch.nn.Linear(1, 1), "warp", CPU)  # refused before touching it


def test_rwkv_state_in_and_out_continues_the_sequence():
    """Eval with a cache (state returned, then passed back) gives the reference's logits and state."""
    model = tiny_model("rwkv").eval()
    spec = archs.get_spec("rwkv")
    input_ids = torch.randint(0, model.config.vocab_size, (2, 90), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        spec.apply_fast_path(model, "reference", CPU)
        full = model(input_ids=input_ids).logits
        ref_state = model(input_ids=input_ids[:, :37], use_cache=True).state
        spec.apply_fast_path(model, "auto", CPU)
        head = model(input_ids=input_ids[:, :37], use_cache=True)
        head_state = [s.clone() for s in head.state]  # the next call updates the state in place
        tail = model(input_ids=input_ids[:, 37:], state=head.state, use_cache=True)
    assert relative_error(torch.cat([head.logits, tail.logits], dim=1), full) < 1e-5
    # A WKV state is (num, den, max) with num * exp(max) the invariant; compare on the reference's scale.
    for layer in range(model.config.num_hidden_layers):
        num, den, top = (s[:, :, layer] for s in head_state[2:])
        ref_num, ref_den, ref_top = (s[:, :, layer] for s in ref_state[2:])
        assert relative_error(num * torch.exp(top - ref_top), ref_num) < 1e-5
        assert relative_error(den * torch.exp(top - ref_top), ref_den) < 1e-5


def wkv_inputs(batch, seq, channels, decay_scale, first_scale, key_scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(channels, generator=g) * decay_scale,
        torch.randn(channels, generator=g) * first_scale,
        torch.randn(batch, seq, channels, generator=g) * key_scale,
        torch.randn(batch, seq, channels, generator=g),
    )


@pytest.mark.parametrize("scales", [(3.0, 4.0, 4.0), (3.0, 10.0, 10.0), (6.0, 40.0, 40.0), (0.0, 80.0, 80.0)])
def test_wkv_is_stable_for_extreme_decay_first_and_keys_on_long_sequences(scales):
    """Against the float64 loop: finite and accurate where transformers' fp32 loop is finite."""
    inputs = [t.requires_grad_() for t in wkv_inputs(2, 1024, 16, *scales)]
    time_decay, time_first, key, value = inputs
    if scales[0] == 0.0:  # all channels decay fast: w = -e^4 per step
        time_decay = time_decay + 4.0
    with torch.no_grad():
        exact, _ = modeling_rwkv.rwkv_linear_attention_cpu(*(t.double() for t in (time_decay, time_first, key, value)))
        reference, _ = modeling_rwkv.rwkv_linear_attention_cpu(time_decay, time_first, key, value)
    fast, _ = wkv_module.wkv(time_decay, time_first, key, value)
    assert torch.isfinite(reference).all() and torch.isfinite(fast).all()
    assert relative_error(fast, exact) <= max(2 * relative_error(reference, exact), 1e-6)
    grads = torch.autograd.grad((fast * torch.linspace(-1, 1, 1024)[:, None]).sum(), inputs)
    assert all(torch.isfinite(g).all() for g in grads)


def test_wkv_general_form_matches_the_matmul_form(monkeypatch):
    """Both level-1 forms (gradients included) agree, and ordinary inputs take the matmul form."""
    inputs = [t.requires_grad_() for t in wkv_inputs(2, 75, 8, 1.0, 1.0, 1.0, seed=3)]
    weights = torch.randn(2, 75, 8)

    def run():
        out, state = wkv_module.wkv(*inputs, return_state=True)
        return [out, *state, *torch.autograd.grad((out * weights).sum(), inputs)]

    calls, original = [], wkv_module._factored_sums
    monkeypatch.setattr(wkv_module, "_factored_sums", lambda *a: calls.append(1) or original(*a))
    matmul = run()
    assert calls, "ordinary inputs should use the matmul form"
    monkeypatch.setattr(wkv_module, "MAX_KEY_SPREAD", -1.0)
    general = run()
    assert len(calls) == 1
    # States may carry different maxima: compare num * exp(max) and den * exp(max).
    out_m, num_m, den_m, top_m, *grads_m = matmul
    out_g, num_g, den_g, top_g, *grads_g = general
    assert relative_error(out_m, out_g) < 1e-6
    assert relative_error(num_m * torch.exp(top_m - top_g), num_g) < 1e-5
    assert relative_error(den_m * torch.exp(top_m - top_g), den_g) < 1e-5
    assert all(relative_error(a, b) < 1e-5 for a, b in zip(grads_m, grads_g))


def test_selective_scan_matches_transformers_for_large_steps():
    """Step sizes up to softplus(30): decays underflow to 0 exactly as in the reference, nothing overflows."""
    g = torch.Generator().manual_seed(4)
    batch, d_inner, d_state, seq = 2, 8, 4, 40
    A = -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
    args = [
        torch.randn(batch, d_inner, seq, generator=g),
        torch.randn(batch, d_inner, seq, generator=g) * 15,
        A,
        torch.randn(batch, d_state, seq, generator=g),
        torch.randn(batch, d_state, seq, generator=g),
        torch.ones(d_inner),
        torch.randn(batch, d_inner, seq, generator=g),
        torch.randn(d_inner, generator=g),
    ]
    args = [a.requires_grad_() for a in args]

    def run(fn):
        u, delta, A, B, C, D, z, bias = args
        y = fn(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True)
        return [y, *torch.autograd.grad((y * torch.linspace(-1, 1, seq)).sum(), args)]

    fast, reference = run(scan_module.selective_scan), run(modeling_mamba.mamba_selective_scan)
    assert all(torch.isfinite(t).all() for t in fast)
    assert all(relative_error(a, b) < 1e-5 for a, b in zip(fast, reference))


def test_mamba_on_cuda_without_kernels_warns_and_uses_the_torch_scan():
    model = tiny_model("mamba")
    with pytest.warns(RuntimeWarning, match="without mamba_ssm"):
        path = archs.get_spec("mamba").apply_fast_path(model, "auto", torch.device("cuda"))
    assert path.startswith("torch-scan")
    with pytest.raises(ParcError, match="cuda-kernels needs mamba_ssm"):
        archs.get_spec("mamba").apply_fast_path(model, "cuda-kernels", torch.device("cuda"))


def test_building_rwkv_never_asks_the_hub_for_its_cuda_kernel(monkeypatch):
    """transformers loads its WKV kernel from the Hub in the constructor when CUDA + ninja are there."""
    attempts = []
    monkeypatch.setattr(modeling_rwkv, "is_ninja_available", lambda: True)
    monkeypatch.setattr(modeling_rwkv, "is_torch_cuda_available", lambda: True)
    monkeypatch.setattr(modeling_rwkv, "load_wkv_cuda_kernel", attempts.append)
    modeling_rwkv.RwkvSelfAttention(modeling_rwkv.RwkvConfig(hidden_size=8, num_hidden_layers=1))
    assert attempts, "without Parc's guard, transformers would fetch the kernel"
    attempts.clear()
    tiny_model("rwkv")
    assert not attempts and modeling_rwkv.rwkv_cuda_kernel is None

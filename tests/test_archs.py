"""The three Parc architectures: exact published parameter counts, config values, random init by seed."""

from __future__ import annotations

import pytest
import torch

from parc import archs
from parc.config import compose
from parc.errors import ParcError

PARC_PARAMETERS = {"pythia": 162_281_472, "mamba": 129_133_056, "rwkv": 169_342_464}


@pytest.mark.parametrize("name", sorted(PARC_PARAMETERS))
def test_parc_parameter_counts(name):
    cfg = compose([f"arch={name}"])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0, device="meta")
    assert archs.count_parameters(model) == PARC_PARAMETERS[name]
    assert model.config.vocab_size == 50277


def test_padded_vocab_gives_the_published_pythia_count():
    cfg = compose(["arch=pythia", "arch.pad_vocab_multiple=128"])
    model = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0, device="meta")
    assert model.config.vocab_size == 50304
    assert archs.count_parameters(model) == 162_322_944  # the Pythia-160m model card's number


@pytest.mark.parametrize("name", sorted(PARC_PARAMETERS))
def test_seed_sets_the_initialisation(name):
    cfg = compose(["experiment=demo", f"arch={name}"])
    a = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0)
    b = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=0)
    c = archs.build_model(cfg.arch, cfg.data.vocab_size, seed=1)
    for (key, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), key
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_unknown_architecture_is_refused():
    with pytest.raises(ParcError, match="unknown architecture 'gpt5'"):
        archs.get_spec("gpt5")


@pytest.mark.parametrize("name", sorted(PARC_PARAMETERS))
def test_flops_per_token_is_about_six_times_parameters(name):
    cfg = compose([f"arch={name}"])
    config = archs.hf_config(cfg.arch, 50277)
    n = PARC_PARAMETERS[name]
    flops = archs.get_spec(name).flops_per_token(config, 1024)
    assert 4 * n < flops < 12 * n

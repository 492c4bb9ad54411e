"""The GPT: causal, confined to its document when asked, positioned by position_ids."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from fastload.errors import ConfigError
from fastload.train import GPT, MODEL_CONFIGS, GPTConfig

SMALL = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=97)


def _model(**changes) -> GPT:
    torch.manual_seed(0)
    return GPT(replace(SMALL, **changes)).eval()


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_logits_have_one_row_per_token_and_never_look_ahead(position):
    model = _model(position=position)
    ids = torch.randint(0, 97, (3, 16))
    logits = model(ids)
    assert logits.shape == (3, 16, 97)
    changed = ids.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 97
    with torch.no_grad():
        assert torch.equal(model(ids)[:, :10], model(changed)[:, :10])
        assert not torch.allclose(model(ids)[:, 10:], model(changed)[:, 10:])


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_a_document_packed_after_another_scores_as_if_it_were_alone(position):
    # Row = [doc A (6 tokens) | doc B (10 tokens)], positions restarting at B, document mask on:
    # B's logits equal those of B alone at the start of a row.
    model = _model(position=position)
    a, b = torch.randint(0, 97, (1, 6)), torch.randint(0, 97, (1, 10))
    packed = torch.cat([a, b], dim=1)
    position_ids = torch.cat([torch.arange(6), torch.arange(10)])[None]
    document_ids = torch.tensor([[0] * 6 + [1] * 10], dtype=torch.int32)
    with torch.no_grad():
        together = model(packed, position_ids=position_ids, document_ids=document_ids)[:, 6:]
        alone = model(b, position_ids=torch.arange(10)[None], document_ids=torch.zeros(1, 10, dtype=torch.int32))
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
        unmasked = _model(position=position, document_mask=False)(packed, position_ids=position_ids, document_ids=document_ids)[:, 6:]
    assert not torch.allclose(unmasked, alone, atol=1e-3)  # without the mask, B sees A


def test_input_and_output_embeddings_are_one_matrix_and_decay_groups_split_matrices_from_vectors():
    from fastload.train import TrainConfig
    from fastload.train.optim import make_optimizer

    model = _model()
    assert model.lm_head.weight is model.wte.weight
    optimizer = make_optimizer(model, TrainConfig(model=SMALL, weight_decay=0.1))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() == 1 for p in plain["params"])
    assert sum(p.numel() for g in (decayed, plain) for p in g["params"]) == model.num_parameters()


def test_named_configs_include_a_cpu_tiny_and_gpt2_small_and_unknown_names_list_the_valid_ones():
    assert MODEL_CONFIGS["tiny"].n_layer == 2 and MODEL_CONFIGS["tiny"].n_embd == 128 and MODEL_CONFIGS["tiny"].block_size == 128
    small = GPT(GPTConfig.named("gpt2-small", vocab_size=50257))
    assert 123e6 < small.num_parameters() < 125e6  # GPT-2 small's 124 M, with tied embeddings
    with pytest.raises(ConfigError, match="valid names: tiny, mini, gpt2-small, gpt2-medium"):
        GPTConfig.named("huge")


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(n_embd=30, n_head=4), "multiple of n_head"),
        (dict(position="alibi"), "position must be one of"),
        (dict(n_layer=0), "n_layer must be a positive integer"),
        (dict(n_embd=6, n_head=2, position="rotary"), "even head size"),
        (dict(vocab_size=1), "vocab_size must be an integer >= 2"),
    ],
)
def test_a_bad_model_config_says_which_field_and_why(changes, message):
    with pytest.raises(ConfigError, match=message):
        replace(SMALL, **changes)


def test_a_sequence_longer_than_the_block_size_is_refused():
    with pytest.raises(ConfigError, match="longer than the model's block_size 16"):
        _model()(torch.zeros(1, 17, dtype=torch.int64))

"""GPT-2's GELU through one fused kernel: the same function, every GPT-2 prefdiv loads uses it."""

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.activations import GELUTanh, NewGELUActivation

from prefdiv import load


def _gpt2(**kw):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4, **kw)
    return GPT2LMHeadModel(cfg).eval()


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_fused_gelu_is_the_same_function_forward_and_backward():
    plain = _gpt2()
    fused = load.fuse_gelu(copy.deepcopy(plain))
    assert _count(plain, NewGELUActivation) == 2 and _count(fused, NewGELUActivation) == 0
    assert _count(fused, GELUTanh) == 2
    assert fused.config.activation_function == "gelu_new"  # saved models stay unchanged
    ids = torch.randint(0, 97, (3, 20))
    out_plain, out_fused = plain(input_ids=ids, labels=ids), fused(input_ids=ids, labels=ids)
    torch.testing.assert_close(out_fused.logits, out_plain.logits, rtol=0, atol=1e-5)
    out_plain.loss.backward()
    out_fused.loss.backward()
    for (name, a), b in zip(plain.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_other_activations_are_left_alone():
    model = _gpt2(activation_function="relu")
    before = [type(m) for m in model.modules()]
    assert [type(m) for m in load.fuse_gelu(model).modules()] == before


def test_load_policy_fuses(hub_like):
    model, _ = load.load_policy(hub_like / "gpt2-imdb")
    assert _count(model, NewGELUActivation) == 0 and _count(model, GELUTanh) > 0


def test_policy_tokenizer_pads_and_load_policy_pads_left(hub_like):
    tokenizer = load.policy_tokenizer(hub_like / "gpt2-imdb")
    assert tokenizer.pad_token == tokenizer.eos_token
    assert tokenizer.padding_side == "right"  # training's tokenizer, saved with the policy, as is
    _, for_generation = load.load_policy(hub_like / "gpt2-imdb")
    assert for_generation.padding_side == "left"


def test_a_missing_model_directory_is_a_user_error(tmp_path):
    from prefdiv.errors import UserError

    for loader in (load.load_policy, load.load_reward):
        with pytest.raises(UserError, match=r"model directory '.*sft' does not exist.*dvc repro"):
            loader(tmp_path / "models" / "sft")

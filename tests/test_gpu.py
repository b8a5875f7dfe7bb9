"""The fast paths on a CUDA GPU (skipped elsewhere): CUDA-graph decoding, compiled log-probs,
bf16 evaluation forwards, each against its plain counterpart on the same GPU.

Run on a GPU machine with `pytest -q tests/test_gpu.py`; CI has no GPU, the CPU tests of
test_sampling, test_trainer and test_evaluation cover the same functions there.
"""

import copy

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=1000, n_positions=128, n_embd=128, n_layer=2, n_head=4)
    cfg.resid_pdrop = cfg.embd_pdrop = cfg.attn_pdrop = 0.0  # as TRL trains (disable_dropout)
    return GPT2LMHeadModel(cfg).cuda().eval()


def _gen(**kw):
    from prefdiv.config import GenerationParams

    base = dict(max_new_tokens=40, temperature=0.7, top_k=1, no_repeat_ngram_size=2)
    return GenerationParams(**{**base, "min_tokens": 0, "batch_size": 16, **kw})


def _prompts(rows=16, length=12):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 1000, (rows, length), generator=g).cuda()
    mask = torch.ones_like(ids)
    mask[: rows // 2, : length // 3] = 0  # left padding in half the rows
    return ids, mask


def test_graph_replay_equals_eager_static_steps(gpt2):
    """The captured step replays exactly what the eager static step computes (bf16 autocast)."""
    from prefdiv import decoding

    ids, mask = _prompts()
    outs = []
    for graph in (True, False):
        dec = decoding.StaticDecoder(gpt2, 16, 12 + 40, _gen(), eos=999, pad=0, graph=graph)
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, cache_enabled=False):
            outs.append(dec.run(ids, mask).clone())
    assert torch.equal(outs[0], outs[1])


def test_static_greedy_tokens_match_dynamic_decode(gpt2):
    """float32: the static cache (masked slots) and the dynamic one give the same greedy tokens
    (rounding may flip a near-tie now and then: ≥ 15 of 16 rows identical)."""
    from prefdiv import decoding, sampling

    ids, mask = _prompts()
    with torch.no_grad():
        plain = sampling.decode(gpt2, ids, mask, gen=_gen(), eos_id=999, pad_id=0)
        dec = decoding.StaticDecoder(gpt2, 16, 12 + 40, _gen(), eos=999, pad=0)
        static = dec.run(ids, mask)[:, : plain.shape[1]]
    assert dec.graphs  # the CUDA graph path ran
    assert (static == plain).all(1).sum() >= 15


def test_compiled_token_logps_match_eager_and_trl_in_bf16(gpt2):
    from trl.trainer.utils import add_fused_lm_head

    from prefdiv import trainer

    model = copy.deepcopy(gpt2).train()
    ids = torch.randint(1, 1000, (8, 64), device="cuda")
    labels = ids.clone()
    labels[:, :10] = -100
    compiled = torch.compile(trainer.token_logps, dynamic=False)
    with torch.autocast("cuda", torch.bfloat16):
        a = compiled(model, ids, labels).sum(1)
        b = trainer.token_logps(model, ids, labels).sum(1)
        add_fused_lm_head(model)
        c = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs.sum(1)
    assert torch.allclose(a, b, rtol=2e-3) and torch.allclose(b, c, rtol=2e-3)


def test_batched_bf16_eval_stats_match_per_prompt_float32(gpt2):
    from prefdiv import evaluation

    other = copy.deepcopy(gpt2)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.02 * torch.randn_like(p))
    g = torch.Generator().manual_seed(2)
    items = [
        (torch.randint(1, 1000, (8,), generator=g).tolist(),
         [torch.randint(1, 1000, (int(n),), generator=g).tolist() for n in (30, 12, 45)])
        for _ in range(6)
    ]  # fmt: skip
    exact = evaluation.sequence_stats(other, gpt2, items, temperature=0.7)
    fast = evaluation.sequence_stats(other, gpt2, items, temperature=0.7, rows=7)
    for (h0, kl0), (h1, kl1) in zip(exact, fast, strict=True):
        assert h1 == pytest.approx(h0, rel=1e-2) and kl1 == pytest.approx(kl0, rel=0.1, abs=0.05)

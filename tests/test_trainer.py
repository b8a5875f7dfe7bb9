"""2-step preference training with every registered loss, on a tiny random GPT-2."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from prefdiv import launch, load, losses, trainer
from prefdiv.config import SpeedParams, TrainParams
from prefdiv.errors import UserError

P = TrainParams(
    learning_rate=1e-3,
    num_epochs=1,
    max_steps=3,
    batch_size=2,
    warmup_steps=0,
    adam_beta1=0.9,
    adam_beta2=0.999,
    weight_decay=0.0,
    max_grad_norm=1.0,
    num_processes=1,
    max_length=32,
    logging_steps=1,
    eval_steps=2,
    save_steps=2,
)


@pytest.fixture(scope="module")
def sft_dir(tiny_policy, tmp_path_factory):
    model, tok = tiny_policy
    path = tmp_path_factory.mktemp("sft")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _pairs(n):
    return [
        {
            "prompt_id": str(i),
            "prompt": "The film was",
            "chosen": " wonderful and moving.",
            "rejected": " boring and awful.",
        }
        for i in range(n)
    ]


def _train(sft_dir, tmp_path, train_pairs, val_pairs, **kw):
    """(curve, validation curve, metrics) of `train_policy` with this file's fixed arguments;
    `kw` overrides loss, β, params, …"""
    args = dict(loss="sigmoid", beta=0.1, p=P, speed=SpeedParams(), seed=0)
    out = trainer.train_policy(
        sft_dir,
        train_pairs,
        val_pairs,
        out_dir=tmp_path / "policy",
        work_dir=tmp_path / "work",
        **{**args, **kw},
    )
    return out.curve, out.val_curve, out.metrics


@pytest.mark.parametrize("loss", sorted(losses.LOSSES))
def test_two_steps_with_every_loss(loss, sft_dir, tmp_path):
    curve, val, final = _train(
        sft_dir,
        tmp_path,
        _pairs(6),
        _pairs(2),
        loss=loss,
        beta=0.5,
        loss_options={
            "label_smoothing": 0.1, "alpha": 0.5, "hdpo_alpha": 1.5, "simpo_ratio": 0.3
        },
    )  # fmt: skip
    assert list(curve["step"]) == [1, 2, 3]
    assert all(math.isfinite(v) for v in curve["loss"])
    assert len(val) >= 1 and math.isfinite(final["val/loss"])
    assert (tmp_path / "policy" / "config.json").exists()
    # the policy moved: training happened (lr 1e-3 on 6 pairs)
    a = AutoModelForCausalLM.from_pretrained(sft_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "policy").state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_sft_copies_the_policy(sft_dir, tmp_path):
    curve, val, final = _train(sft_dir, tmp_path, [], [], loss="sft")
    assert curve.empty and val.empty and final == {}
    assert (tmp_path / "policy" / "config.json").exists()


def test_annealed_beta_is_logged_every_step(sft_dir, tmp_path):
    p = TrainParams(**{**vars(P), "max_steps": 5})
    curve, _, _ = _train(sft_dir, tmp_path, _pairs(10), [], beta=0.0, beta_end=1.0, p=p)
    # the loss at step s uses β(s) = s/(max_steps-1), logged with the step that used it
    assert list(curve["beta"]) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert curve["loss"].iloc[0] == pytest.approx(math.log(2))  # β = 0: −log σ(0)


def test_no_pairs_fails_with_a_clear_message(sft_dir, tmp_path):
    with pytest.raises(UserError, match="no training pairs"):
        _train(sft_dir, tmp_path, [], [])


def test_dataset_cache_reuses_tokenisation_and_reference_logps(sft_dir, tmp_path):
    """A second method on the same pairs computes nothing new, and trains exactly as without it."""
    cache = tmp_path / "cache"
    pairs = [{**p, "chosen": p["chosen"] + f" {i}"} for i, p in enumerate(_pairs(6))]

    def cached_files():
        return sorted(f.name for f in cache.rglob("cache-*.arrow"))

    plain, _, _ = _train(sft_dir, tmp_path / "plain", pairs, _pairs(2))
    first, _, _ = _train(sft_dir, tmp_path / "a", pairs, _pairs(2), dataset_cache=cache)
    after_first = cached_files()
    assert after_first  # TRL wrote its tokenised and reference-log-prob caches there
    second, _, _ = _train(
        sft_dir, tmp_path / "b", pairs, _pairs(2), loss="hinge", dataset_cache=cache
    )
    assert cached_files() == after_first  # …and the second method only read them
    assert first["loss"].tolist() == plain["loss"].tolist()
    assert len({p.name for p in cache.iterdir() if p.is_dir()}) == 2  # train + val, by content


def test_logged_margins_start_at_zero_and_grow(sft_dir, tmp_path):
    """Step 1 scores the SFT policy against itself (reference = policy): zero reward margin and
    no pair ranked right; DPO then separates chosen from rejected on every pair."""
    curve, _, _ = _train(sft_dir, tmp_path, _pairs(6), [])
    assert curve["reward_margin"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert curve["reward_acc"].iloc[0] == 0.0
    assert 0 < curve["reward_margin"].iloc[1] < curve["reward_margin"].iloc[2]
    assert curve["reward_acc"].iloc[-1] == 1.0


def test_token_logps_equal_trls_fused_head(sft_dir):
    """The compiled path's log-prob function (no attention mask, full LM head) gives TRL's per-token
    log-probs on right-padded chosen/rejected batches (float32, CPU)."""
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    ids = torch.tensor([[5, 6, 7, 8, 9, 0, 0], [5, 6, 10, 11, 12, 13, 14], [5, 6, 7, 15, 0, 0, 0]])
    mask = (torch.arange(7) < torch.tensor([[5], [7], [4]])).long()
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :2] = -100  # the prompt
    ours = trainer.token_logps(model, ids, labels)
    add_fused_lm_head(model)
    theirs = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs
    assert ours.shape == theirs.shape == (3, 6)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert (ours[labels[:, 1:] == -100] == 0).all()


def test_full_head_training_equals_the_chunked_head(sft_dir, tmp_path):
    """`lm_head: full` (the demo's): TRL's chunked head replaced by `token_logps` for the policy
    and the reference alike; the same curves and weights within float32 tolerance."""
    plain, _, _ = _train(sft_dir, tmp_path / "plain", _pairs(6), _pairs(2))
    full, _, _ = _train(
        sft_dir, tmp_path / "full", _pairs(6), _pairs(2), speed=SpeedParams(lm_head="full")
    )
    assert full["loss"].tolist() == pytest.approx(plain["loss"].tolist(), abs=1e-5)
    assert full["reward_margin"].iloc[0] == pytest.approx(0.0, abs=1e-6)  # policy = reference
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "plain" / "policy").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "policy").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_compiled_fixed_length_training_equals_the_plain_path(sft_dir, tmp_path):
    """torch.compile'd log-probs, batches padded to max_length, collation in a worker process:
    the same losses, margins and trained weights as the plain path, within float32 tolerance."""
    fast = SpeedParams(lm_head="full", compile=True, fixed_length=True, loader_workers=1)
    pairs = [{**p, "chosen": p["chosen"] + " really" * (i % 3)} for i, p in enumerate(_pairs(6))]
    from torch._dynamo.utils import counters

    plain, plain_val, _ = _train(sft_dir, tmp_path / "plain", pairs, _pairs(2))
    counters.clear()
    quick, quick_val, _ = _train(sft_dir, tmp_path / "fast", pairs, _pairs(2), speed=fast)
    assert counters["stats"]["unique_graphs"] >= 1  # compiled: the policy's forward was traced
    for col in ("loss", "reward_margin", "reward_acc"):
        assert quick[col].tolist() == pytest.approx(plain[col].tolist(), abs=1e-5), col
        assert quick_val[col].tolist() == pytest.approx(plain_val[col].tolist(), abs=1e-5), col
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "plain" / "policy").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "fast" / "policy").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_a_truncated_response_is_trained_without_an_appended_eos(sft_dir, tmp_path):
    """TRL appends EOS to every response; one cut at the sampling cap (`*_truncated`) must not end
    in EOS, or training would teach the policy to stop where the cap cut it."""
    pairs = _pairs(2)
    pairs[0] |= {"chosen_truncated": True, "rejected_truncated": False}
    pairs[1] |= {"chosen_truncated": False, "rejected_truncated": True}
    state = launch.accelerator_state()
    args = trainer._dpo_config(
        P, SpeedParams(), beta=0.1, seed=0, world=1, validate=False, output_dir=tmp_path,
        checkpoint=False,
    )  # fmt: skip
    t = trainer.PreferenceTrainer(
        model=AutoModelForCausalLM.from_pretrained(sft_dir),
        args=args,
        train_dataset=trainer._pairs_dataset(pairs, tmp_path / "c", "train", SpeedParams(), state),
        processing_class=load.policy_tokenizer(sft_dir),
        loss_name="sigmoid",
        loss_options={},
    )
    eos = t.processing_class.eos_token_id
    a, b = t.train_dataset[0], t.train_dataset[1]
    assert a["chosen_ids"][-1] != eos and a["rejected_ids"][-1] == eos
    assert b["chosen_ids"][-1] == eos and b["rejected_ids"][-1] != eos
    assert a["chosen_ids"] == b["chosen_ids"][:-1]  # the same text, only the EOS removed


def test_token_logps_head_on_response_positions_keeps_values_and_gradients(sft_dir, monkeypatch):
    """Eager `token_logps` runs the LM head on the response positions only; its log-probs and
    every parameter's gradient equal those of the head on every position (its compiled branch,
    forced here) within float32 tolerance, and the prompt and padding positions stay exactly 0."""
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    ids = torch.tensor([[5, 6, 7, 8, 9, 0, 0], [5, 6, 10, 11, 12, 13, 14], [5, 6, 7, 15, 0, 0, 0]])
    labels = ids.masked_fill(torch.arange(7) >= torch.tensor([[5], [7], [4]]), -100)
    labels[:, :2] = -100  # the prompt

    def run():
        model.zero_grad()
        out = trainer.token_logps(model, ids, labels)
        (out.sum() + out[:, 2].sum()).backward()  # unequal weights per position
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    ours, ours_grad = run()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    every, every_grad = run()
    assert ours.shape == every.shape == (3, 6)
    assert (ours[labels[:, 1:] == -100] == 0).all() and (ours[labels[:, 1:] != -100] < 0).all()
    assert torch.allclose(ours, every, atol=1e-6)
    assert all(torch.allclose(ours_grad[n], every_grad[n], atol=1e-6) for n in ours_grad)


def test_picked_logp_backward_is_autograds_bit_for_bit():
    """`PickedLogp`'s one-buffer backward gives exactly autograd's gradient of the same
    expression (gather − logsumexp), with several rows per target token and any upstream grad;
    its forward is the expression itself."""
    torch.manual_seed(0)
    logits = 4 * torch.randn(300, 257)
    target = torch.randint(0, 257, (300,))
    upstream = torch.randn(300)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    plain = a.gather(-1, target[:, None]).squeeze(-1) - a.logsumexp(-1)
    ours = trainer.PickedLogp.apply(b, target)
    (plain * upstream).sum().backward()
    (ours * upstream).sum().backward()
    assert torch.equal(ours, plain)
    assert torch.equal(b.grad, a.grad)


def test_flush_denormal_zeroes_subnormal_arithmetic_only():
    """`speed.flush_denormal` (train, evaluate): a product that would be subnormal is 0, and a
    subnormal input counts as 0; normal floats are computed as before."""
    tiny = torch.tensor([1e-30], dtype=torch.float32)
    try:
        torch.set_flush_denormal(False)
        assert (tiny * 1e-10).item() > 0  # 1e-40: subnormal
        if not torch.set_flush_denormal(True):  # no FTZ/DAZ on this CPU: nothing to check
            return
        assert (tiny * 1e-10).item() == 0.0
        assert (tiny * 1e-5).item() == pytest.approx(1e-35, rel=1e-6)
    finally:
        torch.set_flush_denormal(False)

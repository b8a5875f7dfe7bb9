"""Tests for prefdiv.losses: hand-computed values, limits, gradient signs, TRL parity, overflow."""

import itertools
import math
import types
from collections import defaultdict

import pytest
import torch

from prefdiv.losses import (
    LOSSES,
    alpha_divergence,
    cdpo,
    exo_pair,
    fkl,
    get_loss,
    hdpo,
    linear_beta,
    sigmoid,
    simpo,
)

# Lengths as 1-element integer tensors: they broadcast over any batch and, integer, keep the
# log-probs' dtype (as the trainer's completion-mask sums do).
LENGTHS = {"chosen_lengths": torch.tensor([2]), "rejected_lengths": torch.tensor([4])}
ALL_OPTIONS = {
    "label_smoothing": 0.1, "alpha": 0.5, "hdpo_alpha": 1.5, "simpo_ratio": 0.2, **LENGTHS
}  # fmt: skip


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


# policy_chosen, policy_rejected, ref_chosen, ref_rejected for two pairs:
# pair 0: ρ_w = -1.0 - (-1.5) = 0.5, ρ_l = -2.0 - (-1.2) = -0.8
# pair 1: ρ_w = -3.0 - (-2.0) = -1.0, ρ_l = -0.5 - (-1.0) = 0.5
PC, PR, RC, RR = _t(-1.0, -3.0), _t(-2.0, -0.5), _t(-1.5, -2.0), _t(-1.2, -1.0)
RHO = [(0.5, -0.8), (-1.0, 0.5)]
BETA = 0.3


def _expected(name: str, rw: float, rl: float) -> float:
    b, h = BETA, rw - rl
    if name == "sigmoid":
        return -_logsig(b * h)
    if name == "hinge":
        return max(0.0, 1.0 - b * h)
    if name == "ipo":
        return (h - 1.0 / (2.0 * b)) ** 2
    if name == "cdpo":
        eps = ALL_OPTIONS["label_smoothing"]
        return -(1 - eps) * _logsig(b * h) - eps * _logsig(-b * h)
    if name == "fkl":  # f'(u) = -1/u
        return -_logsig(b * (-math.exp(-rw) + math.exp(-rl)))
    if name == "jsd":  # f'(u) = log(2u / (1 + u))
        u_w, u_l = math.exp(rw), math.exp(rl)
        return -_logsig(b * (math.log(2 * u_w / (1 + u_w)) - math.log(2 * u_l / (1 + u_l))))
    if name == "alpha":  # f'(u) = (1 - u^-a) / a
        a = ALL_OPTIONS["alpha"]
        fw = (1 - math.exp(rw) ** -a) / a
        fl = (1 - math.exp(rl) ** -a) / a
        return -_logsig(b * (fw - fl))
    if name == "chipo":  # φ(u) = u + log u
        return -_logsig(b * ((math.exp(rw) + rw) - (math.exp(rl) + rl)))
    if name == "exo_pair":  # KL((σ(βh), σ(−βh)) ‖ (1 − ε, ε))
        eps, q = ALL_OPTIONS["label_smoothing"], 1 / (1 + math.exp(-b * h))
        return q * math.log(q / (1 - eps)) + (1 - q) * math.log((1 - q) / eps)
    raise AssertionError(name)


def _expected_raw(name: str, pc: float, pr: float, rc: float, rr: float) -> tuple:
    """(loss, chosen reward, rejected reward) of the losses whose logit is not a function of ρ."""
    b = BETA
    if name == "hdpo":
        a = ALL_OPTIONS["hdpo_alpha"]
        cw, cl = b * (a * pc - rc), b * (a * pr - rr)
    elif name == "simpo":
        cw, cl = b * pc / 2, b * pr / 4  # LENGTHS
    else:
        raise AssertionError(name)
    margin = b * ALL_OPTIONS["simpo_ratio"] if name == "simpo" else 0.0
    return -_logsig(cw - cl - margin), cw, cl


RAW = {"hdpo", "simpo"}  # their logits are not functions of the log-ratios ρ alone


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_values_match_hand_computed_formula(name):
    losses, chosen_r, rejected_r = get_loss(name)(PC, PR, RC, RR, beta=BETA, **ALL_OPTIONS)
    assert losses.shape == chosen_r.shape == rejected_r.shape == (2,)
    if name in RAW:
        inputs = zip(*(x.tolist() for x in (PC, PR, RC, RR)), strict=True)
        rows = [_expected_raw(name, *v) for v in inputs]
        expected, want_c, want_r = (_t(*col) for col in zip(*rows, strict=True))
    else:
        expected = _t(*(_expected(name, rw, rl) for rw, rl in RHO))
        want_c, want_r = BETA * _t(0.5, -1.0), BETA * _t(-0.8, 0.5)
    torch.testing.assert_close(losses, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chosen_r, want_c)
    torch.testing.assert_close(rejected_r, want_r)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_rewards_are_detached(name):
    pc = PC.clone().requires_grad_()
    _, chosen_r, rejected_r = get_loss(name)(pc, PR, RC, RR, beta=BETA, **ALL_OPTIONS)
    assert not chosen_r.requires_grad and not rejected_r.requires_grad


def test_cdpo_with_zero_smoothing_is_sigmoid():
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(16, generator=gen, dtype=torch.float64) * 3 for _ in range(4)]
    torch.testing.assert_close(
        cdpo(*args, beta=0.7, label_smoothing=0.0)[0], sigmoid(*args, beta=0.7)[0]
    )


def _loss_and_grad_h(fn, rho_w, rho_l, beta, **options):
    """Loss and d loss / d policy_chosen (= d/dρ_w) on float64 inputs with zero references."""
    pc = rho_w.clone().requires_grad_()
    zeros = torch.zeros_like(rho_w)
    losses = fn(pc, rho_l, zeros, zeros, beta=beta, **options)[0]
    (grad,) = torch.autograd.grad(losses.sum(), pc)
    return losses.detach(), grad


@pytest.mark.parametrize(
    ("alpha", "reference"),
    [(1e-4, sigmoid), (1 - 1e-4, fkl)],
    ids=["alpha->0 is sigmoid", "alpha->1 is fkl"],
)
def test_alpha_divergence_limits(alpha, reference):
    gen = torch.Generator().manual_seed(1)
    rho_w = torch.randn(32, generator=gen, dtype=torch.float64)
    rho_l = torch.randn(32, generator=gen, dtype=torch.float64)
    got_loss, got_grad = _loss_and_grad_h(alpha_divergence, rho_w, rho_l, 0.5, alpha=alpha)
    ref_loss, ref_grad = _loss_and_grad_h(reference, rho_w, rho_l, 0.5)
    torch.testing.assert_close(got_loss, ref_loss, rtol=1e-3, atol=2e-3)
    torch.testing.assert_close(got_grad, ref_grad, rtol=1e-3, atol=2e-3)
    # and it is a genuine limit: much closer than the α = 0.5 member of the family
    mid_loss, _ = _loss_and_grad_h(alpha_divergence, rho_w, rho_l, 0.5, alpha=0.5)
    assert (mid_loss - ref_loss).abs().max() > 10 * (got_loss - ref_loss).abs().max()


def test_alpha_divergence_small_alpha_float32_is_accurate():
    # expm1 keeps (e^{-αρ_l} - e^{-αρ_w}) / α accurate in float32 for tiny α
    rho_w, rho_l = torch.tensor([0.3, -2.0]), torch.tensor([-0.4, 1.0])
    zeros = torch.zeros(2)
    got = alpha_divergence(rho_w, rho_l, zeros, zeros, beta=1.0, alpha=1e-6)[0]
    torch.testing.assert_close(got, sigmoid(rho_w, rho_l, zeros, zeros, beta=1.0)[0])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_raising_chosen_logp_lowers_the_loss(name):
    # h in {-1, 0, 0.5, 0.8}: below the hinge target 1/β = 2 and the IPO target 1/(2β) = 1,
    # so every loss has a nonzero gradient there.
    rho_w = _t(-1.0, 0.0, 0.7, 0.2)
    rho_l = _t(0.0, 0.0, 0.2, -0.6)
    _, grad = _loss_and_grad_h(get_loss(name), rho_w, rho_l, 0.5, **ALL_OPTIONS)
    assert (grad < 0).all(), grad


EXTREMES = [-1000.0, -100.0, 0.0, 100.0, 1000.0]


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("alpha", [1e-4, 0.5, 1.0])
def test_finite_at_extreme_log_ratios_float32(name, alpha):
    pairs = list(itertools.product(EXTREMES, EXTREMES))
    rho_w = torch.tensor([p[0] for p in pairs])
    rho_l = torch.tensor([p[1] for p in pairs])
    # put the log-ratios in the policy and the reference half-and-half, so all four inputs matter
    inputs = [
        (rho_w / 2).requires_grad_(),
        (rho_l / 2).requires_grad_(),
        (-rho_w / 2).requires_grad_(),
        (-rho_l / 2).requires_grad_(),
    ]
    for beta in (0.1, 1.0, 5.0):
        losses, chosen_r, rejected_r = get_loss(name)(
            *inputs, beta=beta, label_smoothing=0.2, alpha=alpha, **LENGTHS
        )
        assert losses.dtype == torch.float32
        assert torch.isfinite(losses).all(), losses
        assert torch.isfinite(chosen_r).all() and torch.isfinite(rejected_r).all()
        # allow_unused: SimPO reads no reference log-probs
        grads = torch.autograd.grad(losses.sum(), inputs, allow_unused=True)
        for g in grads:
            assert g is None or torch.isfinite(g).all(), g


@pytest.mark.parametrize("name", ["fkl", "alpha"])
def test_overflow_guard_keeps_gradient_direction(name):
    # chosen far *below* the reference (ρ_w = -1000): exp(-ρ_w) would overflow; the loss must stay
    # finite and still push policy_chosen up (negative gradient), not silently go flat.
    pc = torch.tensor([-1000.0], requires_grad=True)
    zeros = torch.zeros(1)
    losses = get_loss(name)(pc, zeros, zeros, zeros, beta=0.1, alpha=0.5)[0]
    (grad,) = torch.autograd.grad(losses.sum(), pc)
    assert torch.isfinite(losses).all() and losses.item() > 1e10
    assert torch.isfinite(grad).all() and grad.item() < 0


def test_linear_beta():
    assert linear_beta(0, 11, 0.0, 1.0) == 0.0
    assert linear_beta(5, 11, 0.0, 1.0) == pytest.approx(0.5)
    assert linear_beta(10, 11, 0.0, 1.0) == pytest.approx(1.0)
    assert linear_beta(3, 10, 0.2, 0.8) == pytest.approx(0.2 + 0.6 * 3 / 9)
    for step in (0, 5, 10):
        assert linear_beta(step, 11, 0.3, None) == 0.3
    assert linear_beta(0, 1, 0.3, 0.9) == 0.3
    assert linear_beta(0, 0, 0.3, 0.9) == 0.3


def test_get_loss_unknown_name_lists_allowed_names():
    with pytest.raises(ValueError, match="nope") as info:
        get_loss("nope")
    for name in LOSSES:
        assert name in str(info.value)


def test_registry_keys():
    assert set(LOSSES) == {
        "sigmoid", "hinge", "ipo", "cdpo", "fkl", "jsd", "alpha",  # levels 1–3
        "hdpo", "chipo", "exo_pair", "simpo",  # level 4
    }  # fmt: skip


def test_hdpo_at_alpha_one_is_dpo_and_alpha_weighs_the_policy_term_only():
    gen = torch.Generator().manual_seed(4)
    args = [torch.randn(16, generator=gen, dtype=torch.float64) * 3 for _ in range(4)]
    torch.testing.assert_close(
        hdpo(*args, beta=0.3, hdpo_alpha=1.0)[0], sigmoid(*args, beta=0.3)[0]
    )
    # α multiplies the policy log-probs, not the reference's: hdpo(2·pc, 2·pr; α = 0.5) = DPO
    pc, pr, rc, rr = args
    torch.testing.assert_close(
        hdpo(2 * pc, 2 * pr, rc, rr, beta=0.3, hdpo_alpha=0.5)[0], sigmoid(*args, beta=0.3)[0]
    )


def test_simpo_ignores_the_reference_and_normalises_by_length():
    pc, pr = _t(-6.0, -2.0), _t(-8.0, -9.0)
    a = simpo(pc, pr, _t(0.0, 0.0), _t(0.0, 0.0), beta=2.0, simpo_ratio=0.5, **LENGTHS)[0]
    b = simpo(pc, pr, _t(-50.0, 3.0), _t(7.0, -1.0), beta=2.0, simpo_ratio=0.5, **LENGTHS)[0]
    torch.testing.assert_close(a, b)
    # a response twice as long with the same mean token log-prob has the same reward
    long = {"chosen_lengths": torch.tensor([4]), "rejected_lengths": torch.tensor([8])}
    torch.testing.assert_close(simpo(2 * pc, 2 * pr, pc, pr, beta=2.0, **long)[0], simpo(
        pc, pr, pc, pr, beta=2.0, **LENGTHS)[0])  # fmt: skip
    with pytest.raises(ValueError, match="lengths"):
        simpo(pc, pr, pc, pr, beta=2.0)


def test_exo_pair_is_smallest_where_the_pair_probability_is_the_target():
    # KL(q ‖ p) = 0 exactly when σ(βh) = 1 − ε, i.e. h = log((1 − ε)/ε) / β
    eps, beta = 1e-3, 0.5
    h = torch.linspace(0, 30, 3001, dtype=torch.float64)
    zeros = torch.zeros_like(h)
    losses = exo_pair(h, zeros, zeros, zeros, beta=beta, label_smoothing=eps)[0]
    assert h[losses.argmin()].item() == pytest.approx(math.log((1 - eps) / eps) / beta, abs=0.01)
    assert losses.min().item() == pytest.approx(0.0, abs=1e-6)  # on a grid of step 0.01


def test_option_validation():
    x = _t(0.0)
    with pytest.raises(ValueError):
        cdpo(x, x, x, x, beta=0.1, label_smoothing=0.7)
    with pytest.raises(ValueError):
        alpha_divergence(x, x, x, x, beta=0.1, alpha=0.0)
    with pytest.raises(ValueError):
        hdpo(x, x, x, x, beta=0.1, hdpo_alpha=0.0)
    with pytest.raises(ValueError):
        exo_pair(x, x, x, x, beta=0.1, label_smoothing=0.0)


# --- parity with TRL -------------------------------------------------------------------------
# TRL 1.16 has no public loss function: the math is inline in DPOTrainer._compute_loss. We call
# that real method on a stand-in `self` whose model returns per-token log-probs we control, with
# precomputed reference log-probs in the batch, so TRL's own code computes the loss.


class _FakeModel:
    """Returns TRL's fused-LM-head outputs with chosen log-probs that require grad."""

    training = True

    def __init__(self, per_token_logps: torch.Tensor):
        self.per_token_logps = per_token_logps

    def __call__(self, **kwargs):
        n, t = self.per_token_logps.shape
        return types.SimpleNamespace(
            log_probs=self.per_token_logps,
            entropy=torch.zeros(n, t),
            mean_logits=torch.zeros(n, t),
            is_top1=torch.zeros(n, t, dtype=torch.bool),
        )


def _trl_loss(
    policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, loss_type, f_div, coef,
    label_smoothing=0.0,
):  # fmt: skip
    trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")
    b = policy_chosen.shape[0]
    seq = 3  # input length 4 -> 3 shifted positions; one completion token per response
    gen = torch.Generator().manual_seed(7)
    # split each summed log-prob over the positions: TRL sums them back
    split = torch.rand(2 * b, seq, generator=gen)
    split = split / split.sum(dim=1, keepdim=True)
    per_token = split * torch.cat([policy_chosen, policy_rejected])[:, None]
    completion_mask = torch.tensor([[0, 0, 0, 1]] * (2 * b))
    identity = lambda x: x  # noqa: E731
    model = _FakeModel(per_token)
    fake_self = types.SimpleNamespace(
        model=model,
        accelerator=types.SimpleNamespace(
            device=torch.device("cpu"), gather=identity, gather_for_metrics=identity
        ),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type=f_div,
        f_alpha_divergence_coef=coef,
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.ones(2 * b, 4, dtype=torch.long),
        "attention_mask": torch.ones(2 * b, 4, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    loss = trl_dpo.DPOTrainer._compute_loss(fake_self, model, inputs, return_outputs=False)
    return loss, fake_self._metrics["train"]


@pytest.mark.parametrize(
    ("name", "loss_type", "f_div", "options"),
    [
        ("sigmoid", "sigmoid", "reverse_kl", {}),
        ("hinge", "hinge", "reverse_kl", {}),
        # one completion token per response: TRL's IPO length normalisation divides by 1
        ("ipo", "ipo", "reverse_kl", {}),
        ("jsd", "sigmoid", "js_divergence", {}),
        # TRL f'(t) = 1 - 1/t: the constant cancels in the difference
        ("fkl", "sigmoid", "forward_kl", {}),
        # TRL f'(t) = (t^(c-1) - 1)/(c-1) with c = 1 - alpha equals ours
        ("alpha", "sigmoid", "alpha_divergence", {"alpha": 0.3}),
        ("alpha", "sigmoid", "alpha_divergence", {"alpha": 0.8}),
        # EXO, Eq. (16) of arXiv 2402.00856 with the paper's ε = 1e-3
        ("exo_pair", "exo_pair", "reverse_kl", {"label_smoothing": 1e-3}),
        ("exo_pair", "exo_pair", "reverse_kl", {"label_smoothing": 0.05}),
    ],
)
def test_matches_trl(name, loss_type, f_div, options):
    # float32: TRL's alpha-divergence branch only knows float16/bfloat16/float32
    gen = torch.Generator().manual_seed(3)
    b = 8
    ref_chosen = -10 + torch.randn(b, generator=gen, dtype=torch.float32)
    ref_rejected = -10 + torch.randn(b, generator=gen, dtype=torch.float32)
    # moderate log-ratios (|ρ| < 5) so TRL's own exp clamp is never hit
    policy_chosen = ref_chosen + 4 * (2 * torch.rand(b, generator=gen, dtype=torch.float32) - 1)
    policy_rejected = ref_rejected + 4 * (2 * torch.rand(b, generator=gen, dtype=torch.float32) - 1)
    beta = 0.4
    coef = 1.0 - options.get("alpha", 0.5)

    pc_trl = policy_chosen.clone().requires_grad_()
    trl_loss, metrics = _trl_loss(
        pc_trl, policy_rejected, ref_chosen, ref_rejected, beta, loss_type, f_div, coef,
        options.get("label_smoothing", 0.0),
    )  # fmt: skip
    (trl_grad,) = torch.autograd.grad(trl_loss, pc_trl)

    pc = policy_chosen.clone().requires_grad_()
    losses, chosen_r, rejected_r = get_loss(name)(
        pc, policy_rejected, ref_chosen, ref_rejected, beta=beta, **options
    )
    (grad,) = torch.autograd.grad(losses.mean(), pc)

    torch.testing.assert_close(losses.mean(), trl_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, trl_grad, rtol=1e-5, atol=1e-6)
    assert metrics["rewards/chosen"][0] == pytest.approx(chosen_r.mean().item())
    assert metrics["rewards/rejected"][0] == pytest.approx(rejected_r.mean().item())

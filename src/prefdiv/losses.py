"""Pairwise preference losses as pure functions of summed per-response log-probs.

Notation (all tensors float, shape ``(B,)``, one entry per preference pair):

* ``policy_chosen_logps``   = log π_θ(y_w | x), summed over the response tokens
* ``policy_rejected_logps`` = log π_θ(y_l | x)
* ``ref_chosen_logps``      = log π_ref(y_w | x)
* ``ref_rejected_logps``    = log π_ref(y_l | x)
* ρ_w = policy_chosen − ref_chosen,  ρ_l = policy_rejected − ref_rejected  (log-ratios)
* u = π_θ / π_ref = exp(ρ),  h = ρ_w − ρ_l

Every loss has the same signature
``loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
beta, **options) -> (losses, chosen_rewards, rejected_rewards)``, each output of shape ``(B,)``.
``losses`` is per pair (the caller takes the mean); the rewards are the DPO implicit rewards
β·ρ_w and β·ρ_l, detached, as in eric-mitchell/direct-preference-optimization ``trainers.py``.
Options a loss does not use (``label_smoothing``, ``alpha``, ``hdpo_alpha``, ``simpo_ratio``,
and the response lengths ``chosen_lengths`` / ``rejected_lengths``, (B,) token counts that only
SimPO reads) are accepted and ignored, so a caller can always pass all of them.

The f-DPO losses (``fkl``, ``jsd``, ``alpha``; Wang et al., arXiv 2309.16240) replace the
log-ratio of DPO by f′(u) of the chosen f-divergence:  −log σ(β [f′(u_w) − f′(u_l)]).
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[..., tuple[Tensor, Tensor, Tensor]]

# exp(50) ≈ 5.2e21: far inside float32 range (max ≈ 3.4e38), and for any sensible β, β·e^50
# already puts σ(β·d) fully at 0 or 1, so exponentiating further would change no decision.
_EXP_MAX = 50.0


def _log_ratios(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor) -> tuple[Tensor, Tensor]:
    """(ρ_w, ρ_l), each (B,)."""
    return pc - rc, pr - rr


def _rewards(rho_w: Tensor, rho_l: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """DPO implicit rewards β·ρ, detached: they are logged, never differentiated."""
    return beta * rho_w.detach(), beta * rho_l.detach()


def _expm1_tangent(a: Tensor) -> Tensor:
    """exp(a) − 1, continued beyond a = 50 by its tangent line so it can never overflow.

    For a <= 50 this is exactly ``torch.expm1(a)`` (expm1 rather than exp keeps the small-α
    differences of the α-divergence accurate). For a > 50 it returns
    expm1(50) + e^50·(a − 50): the value stays finite (<= ~1e25 for |a| <= 2000) and the
    derivative is e^50 > 0 instead of +inf. So the gradient keeps the right sign and never
    becomes inf; in particular no inf − inf or 0·inf can appear downstream. Above 50 the
    clamp's zero gradient is replaced by the linear term's e^50, so the guard never silences
    the gradient.
    """
    # Two separate branches (clamp and relu) rather than ``a - clamped``: sharing the clamped
    # node would make autograd add e^50 and subtract it again, cancelling the true gradient.
    return torch.expm1(a.clamp(max=_EXP_MAX)) + math.exp(_EXP_MAX) * torch.relu(a - _EXP_MAX)


def sigmoid(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """DPO, arXiv 2305.18290 Eq. (7) (reverse-KL constraint): −log σ(β h). Shapes (B,)."""
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    losses = -F.logsigmoid(beta * (rho_w - rho_l))
    return (losses, *_rewards(rho_w, rho_l, beta))


def hinge(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """SLiC-HF, arXiv 2305.10425 Eq. (1) calibration loss, in the DPO reference study's (and
    TRL's) form: max(0, 1 − β h) = β · max(0, 1/β − h). Shapes (B,).

    The paper's max(0, δ − log π(y_w) + log π(y_l)) has a margin δ in nats; here h is the
    log-ratio difference against the reference and the margin is 1/β nats (10 at β = 0.1), not
    δ = 1: β scales the loss and sets the margin at once, so a hinge β sweep moves both."""
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    losses = torch.relu(1.0 - beta * (rho_w - rho_l))
    return (losses, *_rewards(rho_w, rho_l, beta))


def ipo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """IPO, arXiv 2310.12036 Eq. (17) with β as τ: (h − 1/(2β))². Shapes (B,).

    h uses the *summed* log-probs as in the paper; TRL divides by the completion length,
    which this function deliberately does not.
    """
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    losses = (rho_w - rho_l - 1.0 / (2.0 * beta)) ** 2
    return (losses, *_rewards(rho_w, rho_l, beta))


def cdpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    label_smoothing: float = 0.0,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """Conservative DPO (Mitchell, "A note on DPO with noisy preferences",
    ericmitchell.ai/cdpo.pdf): labels flipped with probability ε = ``label_smoothing``,
    −(1 − ε) log σ(β h) − ε log σ(−β h). ε = 0 is DPO. Shapes (B,).
    """
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"cdpo needs 0 <= label_smoothing <= 0.5, got {label_smoothing}")
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    logits = beta * (rho_w - rho_l)
    losses = -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(
        -logits
    )
    return (losses, *_rewards(rho_w, rho_l, beta))


def fkl(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """f-DPO with the forward KL (arXiv 2309.16240, the f-DPO objective derived from its Theorem 1;
    Table 1: f(u) = −log u, f′(u) = −1/u): −log σ(β [e^{−ρ_l} − e^{−ρ_w}]). Shapes (B,).

    Overflow: f′(u_w) − f′(u_l) = e^{−ρ_l} − e^{−ρ_w} is evaluated as
    expm1(−ρ_l) − expm1(−ρ_w) (the −1's cancel) with ``_expm1_tangent``, i.e. exp is exact for
    arguments <= 50 (ρ >= −50) and continued linearly (slope e^50) beyond. The difference is
    therefore finite (|d| <~ 1e25 for |ρ| <= 1000), logsigmoid of a finite number is finite,
    and every gradient factor is finite: σ(−βd) ∈ [0, 1] times β·(slope <= e^50). Values are
    exact whenever ρ_w, ρ_l >= −50, i.e. unless a response became e^50 times less likely
    than under the reference; beyond that the loss grows linearly instead of exponentially
    and its gradient keeps the right sign (it does not vanish).
    """
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    delta = _expm1_tangent(-rho_l) - _expm1_tangent(-rho_w)
    losses = -F.logsigmoid(beta * delta)
    return (losses, *_rewards(rho_w, rho_l, beta))


def jsd(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """f-DPO with the Jensen–Shannon divergence (arXiv 2309.16240, f-DPO objective after Theorem 1;
    Table 1: f′(u) = log(2u / (1 + u))). Shapes (B,).

    log(2u/(1+u)) = log 2 + logsigmoid(ρ), which is finite and has bounded derivative for any
    ρ, so no overflow handling is needed; the log 2 cancels in the difference.
    """
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    delta = F.logsigmoid(rho_w) - F.logsigmoid(rho_l)
    losses = -F.logsigmoid(beta * delta)
    return (losses, *_rewards(rho_w, rho_l, beta))


def alpha_divergence(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    alpha: float = 0.5,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """f-DPO with the α-divergence (arXiv 2309.16240, f-DPO objective after Theorem 1; Table 1:
    f′(u) = (1 − u^{−α}) / α, α ∈ (0, 1); α → 0 gives reverse KL (DPO), α = 1 forward KL up
    to a constant that cancels). Registry name ``alpha``. Shapes (B,).

    f′(u_w) − f′(u_l) = (e^{−α ρ_l} − e^{−α ρ_w}) / α, evaluated as
    (expm1(−α ρ_l) − expm1(−α ρ_w)) / α with ``_expm1_tangent``: expm1 keeps the small-α
    limit accurate, and exp is exact for α ρ >= −50 and continued linearly beyond, so values
    and gradients stay finite for the same reason as in :func:`fkl`.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha divergence needs 0 < alpha <= 1, got {alpha}")
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    delta = (_expm1_tangent(-alpha * rho_l) - _expm1_tangent(-alpha * rho_w)) / alpha
    losses = -F.logsigmoid(beta * delta)
    return (losses, *_rewards(rho_w, rho_l, beta))


def hdpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    hdpo_alpha: float = 1.0,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """H-DPO, entropy-controllable DPO (Omura et al., arXiv 2411.07595, its loss): the reverse KL
    of DPO split as −H(π) + CE(π, π_ref), the entropy weighted by α:
    −log σ(αβ[log π(y_w) − log π(y_l)] − β[log π_ref(y_w) − log π_ref(y_l)]). Shapes (B,).

    Its optimum is π ∝ π_ref^{1/α} e^{r/(αβ)}: α = 1 is DPO exactly, α > 1 flattens π_ref (more
    entropy), α < 1 sharpens it (the paper's α < 1 for mode-seeking). The implicit rewards are
    β(α log π − log π_ref) of each response, whose difference is the logit above.
    """
    if hdpo_alpha <= 0:
        raise ValueError(f"hdpo needs hdpo_alpha > 0, got {hdpo_alpha}")
    chosen = beta * (hdpo_alpha * policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (hdpo_alpha * policy_rejected_logps - ref_rejected_logps)
    losses = -F.logsigmoid(chosen - rejected)
    return losses, chosen.detach(), rejected.detach()


def chipo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """χPO (Huang et al., arXiv 2407.13399, Algorithm 1): DPO with the link
    φ(u) = u + log u of the χ² + KL regulariser, −log σ(β[φ(u_w) − φ(u_l)]), u = π/π_ref.
    Shapes (B,).

    φ(u_w) − φ(u_l) = (e^{ρ_w} − e^{ρ_l}) + (ρ_w − ρ_l), evaluated as
    expm1(ρ_w) − expm1(ρ_l) + h with ``_expm1_tangent`` (the −1's cancel), so a response that
    became e^50 times likelier than under the reference cannot overflow (see :func:`fkl`, the
    mirror image: here the growth is in u, not 1/u). Algorithm 1 also clips the logit to
    [−2R_max, 2R_max], R_max a bound on the reward of its theory; our reward (a classifier logit)
    has no such bound, so no clip is applied. No official code exists (the one TRL attempt, PR
    #3573, was closed unmerged and did not clip either): this follows the paper (docs/losses.md).
    """
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    delta = _expm1_tangent(rho_w) - _expm1_tangent(rho_l) + (rho_w - rho_l)
    losses = -F.logsigmoid(beta * delta)
    return (losses, *_rewards(rho_w, rho_l, beta))


def exo_pair(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    label_smoothing: float = 1e-3,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """EXO, pairwise (Ji et al., arXiv 2402.00856, Eq. (16) with K = 2): the reverse KL from the
    policy's preference distribution q = (σ(βh), σ(−βh)) over {y_w, y_l} to the target
    p = (1 − ε, ε), ε = ``label_smoothing``:
    σ(βh)[log σ(βh) − log(1 − ε)] + σ(−βh)[log σ(−βh) − log ε]. Shapes (B,).

    DPO minimises the forward KL KL(p‖q) (mean-seeking in the pair); EXO the reverse KL(q‖p),
    which the paper shows matches the mode-seeking optimum of the RLHF objective. ε > 0 (log ε);
    the paper and TRL's `exo_pair` use 1e-3. Equal to TRL 1.16's `exo_pair` (tests).
    """
    if not 0.0 < label_smoothing < 1.0:
        raise ValueError(f"exo_pair needs 0 < label_smoothing < 1, got {label_smoothing}")
    rho_w, rho_l = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    logits = beta * (rho_w - rho_l)
    losses = torch.sigmoid(logits) * (F.logsigmoid(logits) - math.log1p(-label_smoothing)) + (
        torch.sigmoid(-logits) * (F.logsigmoid(-logits) - math.log(label_smoothing))
    )
    return (losses, *_rewards(rho_w, rho_l, beta))


def simpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    simpo_ratio: float = 0.5,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """SimPO (Meng et al., arXiv 2405.14734, Eq. (6)), reference-free and length-normalised:
    −log σ(β/|y_w| log π(y_w) − β/|y_l| log π(y_l) − γ) with the margin γ = β·``simpo_ratio``,
    i.e. −log σ(β[mean log π(y_w) − mean log π(y_l) − simpo_ratio]). Shapes (B,); the lengths |y|
    are token counts, (B,), EOS included where the response has one.

    As the official trainer (princeton-nlp/SimPO, `scripts/simpo_trainer.py`) writes it: γ/β is
    its `gamma_beta_ratio` (default config 0.5 is where its README says to start; β = 2.0–10 in
    its training configs), so a β sweep keeps the margin in mean log-prob units fixed. The
    reference log-probs are accepted (one signature) and unused: SimPO's implicit reward is
    β·(mean token log-prob), which is what its rewards are here.
    """
    if chosen_lengths is None or rejected_lengths is None:
        raise ValueError("simpo needs chosen_lengths and rejected_lengths (token counts)")
    chosen = beta * policy_chosen_logps / chosen_lengths.clamp(min=1)
    rejected = beta * policy_rejected_logps / rejected_lengths.clamp(min=1)
    losses = -F.logsigmoid(chosen - rejected - beta * simpo_ratio)
    return losses, chosen.detach(), rejected.detach()


LOSSES: dict[str, LossFn] = {
    "sigmoid": sigmoid,
    "hinge": hinge,
    "ipo": ipo,
    "cdpo": cdpo,
    "fkl": fkl,
    "jsd": jsd,
    "alpha": alpha_divergence,
    # level 4: diversity-aware losses of 2024–2025 (issue 20; docs/losses.md)
    "hdpo": hdpo,
    "chipo": chipo,
    "exo_pair": exo_pair,
    "simpo": simpo,
}


def get_loss(name: str) -> LossFn:
    """The loss registered as ``name``; ValueError listing the allowed names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(sorted(LOSSES))}") from None


def linear_beta(step: int, total_steps: int, beta_start: float, beta_end: float | None) -> float:
    """β annealed linearly from ``beta_start`` at step 0 to ``beta_end`` at step
    ``total_steps − 1``; constant ``beta_start`` if ``beta_end`` is None or total_steps <= 1.
    Steps outside [0, total_steps − 1] are clamped to the end points.
    """
    if beta_end is None or total_steps <= 1:
        return beta_start
    frac = min(max(step / (total_steps - 1), 0.0), 1.0)
    return beta_start + (beta_end - beta_start) * frac

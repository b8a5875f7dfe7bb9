"""How experiments and configurations are named: the one place for both (imports no prefdiv module).

- An **experiment** is one DVC experiment, a replicate of a configuration: `prefdiv grid` names
  it `<configuration>-s<seed>[-t<train_seed>]` (:func:`replicate_name`).
- A **replicate** is its (seed, train_seed): `seed` drives the whole pipeline, `train_seed` only
  `train` and `evaluate` (README "Experiments").
- A **configuration** is what a replicate repeats: loss, β and the loss's options
  (:func:`settings_key`), at one scale (:func:`config_id`). Two experiments with equal ids are
  replicates of one configuration, whatever their names.
"""

from __future__ import annotations

import re

Replicate = tuple[int, int]  # (seed, train_seed)
SUFFIX = re.compile(r"-s(\d+)(?:-t(\d+))?$")  # the replicate suffix of `replicate_name`


def replicate_name(config: str, seed: int, train_seed: int | None = None) -> str:
    """`<config>-s<seed>`, or `<config>-s<seed>-t<train_seed>` when train seeds are named."""
    return f"{config}-s{seed}" + ("" if train_seed is None else f"-t{train_seed}")


def split_name(name: str) -> tuple[str, int, int] | None:
    """(configuration, seed, train seed) of an experiment named by :func:`replicate_name`; the
    train seed is 0 when the name has none. None for any other name."""
    m = SUFFIX.search(name)
    if m is None or m.start() == 0:
        return None
    return name[: m.start()], int(m[1]), int(m[2] or 0)


def base_name(name: str) -> str:
    """Configuration name of a replicate: `l2-fkl-s1-t2` → `l2-fkl` (other names unchanged)."""
    return SUFFIX.sub("", name)


def replicate(params: dict, name: str = "") -> Replicate:
    """(seed, train_seed) of an experiment (missing train_seed = 0); from the name's suffix when
    the params lack a seed (a failed experiment's params may be empty)."""
    if "seed" in params:
        return int(params["seed"]), int(params.get("train_seed") or 0)
    m = SUFFIX.search(name)
    return (int(m[1]), int(m[2] or 0)) if m else (0, 0)


def config_key(loss, beta, option: dict) -> tuple:
    """Identity of a configuration: loss, β (None for sft) and its options, as rounded floats (so
    that `0.1` from a CSV and `0.1` from params.yaml are one configuration)."""
    beta = None if loss == "sft" or beta is None else round(float(beta), 6)
    return loss, beta, tuple(sorted((k, _rounded(v)) for k, v in option.items()))


def _rounded(v):
    """A number (or its text, as a CSV holds it) rounded; any other text as it is (`divpo`)."""
    try:
        return round(float(v), 6)
    except ValueError:
        return v


# The options each loss reads beside β (params.yaml keys), and how tables write them. A key a loss
# does not read is not part of its configuration: `alpha` set for a DPO run changes nothing.
LOSS_OPTIONS = {
    "alpha": ("alpha",),
    "cdpo": ("label_smoothing",),
    "exo_pair": ("label_smoothing",),
    "hdpo": ("hdpo_alpha",),
    "simpo": ("simpo_ratio",),
}
# How the pairs are chosen (the `pairs` stage); "all" (every pair of a prompt) is the study's.
ALL_PAIRS = "all"
SYMBOLS = {
    "alpha": "α",
    "label_smoothing": "ε",
    "hdpo_alpha": "α_H",
    "simpo_ratio": "γ/β",
    "divpo_rho": "ρ",
}


def options(p: dict) -> dict:
    """The options that make a configuration beside loss and β: those its loss reads
    (:data:`LOSS_OPTIONS`), `beta_end` when β moves, and the pair strategy with its ρ when it is
    not :data:`ALL_PAIRS`. A key missing from `p` (an experiment from before the key existed) is
    left out."""
    if p["loss"] == "sft":
        return {}
    option = {k: p[k] for k in LOSS_OPTIONS.get(p["loss"], ()) if p.get(k) is not None}
    if p.get("beta_end") is not None:
        option["beta_end"] = p["beta_end"]
    if p.get("pair_strategy", ALL_PAIRS) != ALL_PAIRS:
        option["pair_strategy"] = p["pair_strategy"]
        option["divpo_rho"] = p.get("divpo_rho")
    return option


def settings_key(p: dict) -> tuple:
    """:func:`config_key` of experiment-key settings (params or a grid entry): only the options
    of :func:`options` count (`alpha` for `alpha`, ε for `cdpo`, `beta_end` when β moves, …)."""
    return config_key(p["loss"], p["beta"], options(p))


def config_id(params: dict) -> tuple:
    """(scale, *settings_key): the configuration an experiment replicates."""
    return (params.get("scale"), *settings_key(params))


def describe(p: dict) -> tuple[str, str]:
    """(β, options) of a configuration as tables write them: `0.1`, `0.0→1.0`; `α=0.3`, `ε=0.15`,
    `divpo ρ=0.3`."""
    if p["loss"] == "sft":
        return "—", ""
    beta = f"{p['beta']}→{p['beta_end']}" if p.get("beta_end") is not None else str(p["beta"])
    option = {k: v for k, v in options(p).items() if k != "beta_end"}
    strategy = option.pop("pair_strategy", None)
    text = [f"{SYMBOLS[k]}={v}" for k, v in option.items()]
    return beta, " ".join(([strategy] if strategy else []) + text)

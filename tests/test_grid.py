"""`prefdiv.grid`: the grid file (configurations, levels, seeds, its errors) and the replicate
names it expands into; `prefdiv.sweep.queue_commands` for what DVC gets of it."""

from pathlib import Path

import pytest

from prefdiv import grid, names, sweep
from prefdiv.config import EXPERIMENT_KEYS
from prefdiv.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = (
    "defaults: {beta: 0.1, beta_end: null, label_smoothing: 0.0, alpha: 0.5, hdpo_alpha: 1.0, "
    "simpo_ratio: 0.5, pair_strategy: all, divpo_rho: 0.3}\n"
)


def _settings(cmd: list[str]) -> dict[str, str]:
    """The `-S KEY=VALUE` settings of a queue command, in order (a later one would win)."""
    pairs = [cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "-S"]
    return dict(pairs)


def test_grid_queues_every_configuration_with_the_extra_settings():
    configs = grid.load_grid(ROOT / "grid.yaml")
    cmds = sweep.queue_commands(configs, ["scale=paper"])
    assert len(cmds) == len(configs) == 20  # the reference study's 14 and level 4's 6
    for name, cmd in zip(configs, cmds, strict=True):
        assert cmd[:6] == ["dvc", "exp", "run", "--queue", "-n", f"{name}-s0"]
        assert cmd[-2:] == ["-S", "scale=paper"] and "-S" in cmd[6:-2]  # keys, then the extra
        # every experiment key is set, so nothing leaks from the workspace's params.yaml
        assert set(_settings(cmd)) == {*EXPERIMENT_KEYS, "scale"}


def test_every_configuration_once_per_seed_with_both_seeds_set():
    configs = {"a": {"loss": "sft"}, "b": {"loss": "ipo", "beta": 0.3}}
    cmds = sweep.queue_commands(configs, ["scale=paper"], seeds=[0, 1, 2])
    queued = [c[5] for c in cmds]
    # the first configuration at every seed, then seed by seed (two configurations: the same
    # order as configuration by configuration; three below)
    assert queued == ["a-s0", "a-s1", "a-s2", "b-s0", "b-s1", "b-s2"]
    for cmd in cmds:
        config, seed, train_seed = names.split_name(cmd[5])
        s = _settings(cmd)
        assert s["seed"] == str(seed) and s["train_seed"] == "0" and train_seed == 0
        assert s["loss"] == configs[config]["loss"] and s["scale"] == "paper"


def _recomputed_upstream(queue: list[str], workers: int, upstream: int, experiment: int):
    """Experiments that start before their seed's upstream stages are in the run cache, so
    compute them a second time: `workers` take `queue` in order; a seed's first experiment
    computes its stages (`upstream` time units), every other one takes `experiment` units."""
    free, ready, again = [0] * workers, {}, []
    for name in queue:
        _, seed, _ = names.split_name(name)
        start = min(free)
        w = free.index(start)
        if seed not in ready:
            ready[seed] = start + upstream
        elif start < ready[seed]:
            again.append(name)
        free[w] = start + (upstream if ready[seed] == start + upstream else experiment)
    return again


def test_the_queue_computes_each_seeds_upstream_stages_once():
    configs = {"a": {}, "b": {}, "c": {}}
    queued = list(grid.replicates(configs, [0, 1, 2, 3, 4]))
    assert queued[:5] == ["a-s0", "a-s1", "a-s2", "a-s3", "a-s4"]  # each seed's stages first
    rest = ["b-s0", "c-s0", "b-s1", "c-s1", "b-s2", "c-s2", "b-s3", "c-s3", "b-s4", "c-s4"]
    assert queued[5:] == rest  # then seed by seed
    # two workers, five seeds, twelve configurations, upstream stages ≈ 9 experiments (the
    # budget study's demo has 36): the fifth seed's stages run beside seed 0's experiments, none
    # of which waits or recomputes them; configuration by configuration, the fifth seed's second
    # experiment starts before its stages are done and computes them again
    many = {f"c{i}": {} for i in range(12)}
    queued = list(grid.replicates(many, [0, 1, 2, 3, 4]))
    assert _recomputed_upstream(queued, workers=2, upstream=9, experiment=1) == []
    by_config = [f"{c}-s{s}" for c in many for s in range(5)]  # the order before
    assert _recomputed_upstream(by_config, workers=2, upstream=9, experiment=1) == ["c1-s4"]
    with_train_seeds = list(grid.replicates({"a": {}, "b": {}}, [0, 1], [0, 1]))
    head, seed0 = ["a-s0-t0", "a-s1-t0"], ["a-s0-t1", "b-s0-t0", "b-s0-t1"]
    assert with_train_seeds == head + seed0 + ["a-s1-t1", "b-s1-t0", "b-s1-t1"]
    assert grid.replicates({}, [0, 1]) == {}


@pytest.mark.parametrize(
    "train_seeds, expected",
    [
        ([0], ["a-s3"]),
        ([1], ["a-s3-t1"]),  # a nonzero train seed is named even alone
        ([0, 1], ["a-s3-t0", "a-s3-t1"]),
    ],
)
def test_train_seeds_are_named_only_when_asked_for(train_seeds, expected):
    cmds = sweep.queue_commands({"a": {"loss": "sft"}}, seeds=[3], train_seeds=train_seeds)
    assert [c[5] for c in cmds] == expected
    assert [_settings(c)["train_seed"] for c in cmds] == [str(t) for t in train_seeds]
    assert [names.split_name(n) for n in expected] == [("a", 3, t) for t in train_seeds]


def test_names_split_back_into_configuration_and_seeds():
    assert names.split_name("l3-ipo-01-s2") == ("l3-ipo-01", 2, 0)
    assert names.split_name(names.replicate_name("x-s1", 0, 4)) == ("x-s1", 0, 4)
    assert names.split_name("l1-sft") is None  # not a grid replicate (an older bare name)


def test_grid_file_seeds_are_the_default_and_checked(tmp_path):
    assert grid.grid_seeds(ROOT / "grid.yaml") == [0, 1, 2, 3, 4]
    bad = tmp_path / "grid.yaml"
    bad.write_text("seeds: [0, 1, 1]\nexperiments: {a: {loss: sft}}\n")
    with pytest.raises(UserError, match=r"grid.yaml: seeds: 1 is given twice"):
        grid.grid_seeds(bad)
    bad.write_text("seeds: 3\nexperiments: {a: {loss: sft}}\n")
    with pytest.raises(UserError, match=r"grid.yaml: seeds: expected a list"):
        grid.grid_seeds(bad)
    bad.write_text("experiments: {a: {loss: sft}}\n")
    assert grid.grid_seeds(bad) == [0]


@pytest.mark.parametrize(
    "text, must_say",
    [
        (None, "grid.yaml: no such grid file"),
        (DEFAULTS + "experiments:\n  a: {loss: sft}\n  b: loss: ipo\n", "grid.yaml:4: not valid"),
        ("- a\n- b\n", "grid.yaml: expected a mapping with the keys seeds, defaults"),
        (DEFAULTS + "experiment: {a: {loss: sft}}\n", "unknown key 'experiment'; allowed: seeds"),
        (DEFAULTS, "grid.yaml: no configuration; list them (name → settings) under `levels:"),
        (DEFAULTS + "experiments: {}\n", "experiments: expected a mapping of name → settings"),
        (DEFAULTS + "levels: [a]\n", "levels: expected a mapping of level → {title, experiments}"),
        (DEFAULTS + "levels: {one: {}}\n", "levels: 'one' is not a level; levels are integers ≥ 1"),
        (DEFAULTS + "levels: {0: {}}\n", "levels: 0 is not a level"),
        (DEFAULTS + "levels: {1: {experiments: {a: {loss: sft}}}}\n", "levels.1: no title"),
        (
            DEFAULTS + "levels: {1: {title: t, experiment: {a: {loss: sft}}}}\n",
            "levels.1: unknown key 'experiment'; allowed: title, experiments",
        ),
        (DEFAULTS + "levels: {1: {title: t}}\n", "levels.1.experiments: expected a mapping"),
        (
            DEFAULTS + "levels: {1: {title: t, experiments: {a: {loss: sft, bta: 1}}}}\n",
            "levels.1.experiments.a: unknown key 'bta'",
        ),
        (
            DEFAULTS + "levels: {1: {title: t, experiments: {a: {loss: sft}}}}\n"
            "experiments: {a: {loss: ipo}}\n",
            "experiments.a: a is also levels.1.experiments.a; names are unique",
        ),
        (DEFAULTS + "experiments: {a: sft}\n", "experiments.a: expected a mapping of experiment"),
        (
            DEFAULTS + "experiments: {a: {loss: sft, lable_smoothing: 0.1}}\n",
            "experiments.a: unknown key 'lable_smoothing'; allowed: loss, beta",
        ),
        (DEFAULTS + "experiments: {a: {loss: sft, seed: 3}}\n", "a: seed is set per experiment"),
        ("defaults: {train_seed: 1}\n", "defaults: train_seed is set per experiment"),
        ("experiments: {a: {loss: sft}}\n", "experiments.a: no beta, beta_end, label_smoothing"),
        (DEFAULTS + "experiments: {a b: {loss: sft}}\n", "experiment name 'a b': letters"),
    ],
)
def test_a_bad_grid_file_is_one_user_error_naming_file_and_entry(tmp_path, text, must_say):
    path = tmp_path / "grid.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError) as e:
        grid.load_grid(path)
    assert must_say in str(e.value) and "\n" not in str(e.value)


def test_levels_come_from_where_each_configuration_sits_in_the_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        DEFAULTS + "levels:\n"
        "  2: {title: ' f-DPO ', experiments: {b: {loss: fkl}, c: {loss: jsd}}}\n"
        "  1: {title: classics, experiments: {a: {loss: sigmoid}}}\n"
        "experiments: {adhoc: {loss: hinge}}\n"
    )
    configs, levels = grid.load_grid(path), grid.load_levels(path)
    assert list(configs) == ["b", "c", "a", "adhoc"]  # file order: the levels', then the rest
    assert "level" not in configs["b"] and configs["b"]["loss"] == "fkl"  # not passed to DVC
    assert levels.titles == {1: "classics", 2: "f-DPO"} and list(levels.titles) == [1, 2]
    assert levels.configs == {"b": 2, "c": 2, "a": 1}  # the top-level experiments: no level
    found = {n: levels.of(n) for n in ("b-s0", "c-s1-t2", "a", "adhoc-s0", "hoary-tabs")}
    assert found == {"b-s0": 2, "c-s1-t2": 2, "a": 1, "adhoc-s0": None, "hoary-tabs": None}
    # results known only by their settings (the reference study's points) are placed too
    assert levels.by_settings == {
        names.settings_key(configs["b"]): 2,
        names.settings_key(configs["c"]): 2,
        names.settings_key(configs["a"]): 1,
    }
    # queue commands: the settings only, the level nowhere
    assert not any("level" in a for c in sweep.queue_commands(configs) for a in c)


def test_the_study_grid_keeps_its_names_and_four_levels():
    """The committed reports and README tables name the configurations `l<level>-…`."""
    levels = grid.load_levels(ROOT / "grid.yaml")
    assert levels.titles == {
        1: "SFT, SLiC-HF, DPO", 2: "f-DPO", 3: "IPO, cDPO, β anneal", 4: "diversity-aware methods"
    }  # fmt: skip
    assert len(levels.configs) == 20
    assert sum(lvl < 4 for lvl in levels.configs.values()) == 14  # the reference study's
    assert all(name.startswith(f"l{lvl}-") for name, lvl in levels.configs.items())


FRONTIER = DEFAULTS + (
    "levels:\n  1: {title: classics, experiments: {l1-sft: {loss: sft}, l1-dpo: {loss: sigmoid}}}\n"
    "frontier:\n"
    "  betas: [0.03, 0.1, 0.3, 1.0, 3.0]\n"
    "  experiments:\n"
    "    sigmoid: {loss: sigmoid}\n"
    "    ipo: {loss: ipo, betas: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}\n"
    "    alpha-03: {loss: alpha, alpha: 0.3}\n"
)


def test_the_frontier_sweeps_beta_per_loss_and_skips_what_the_levels_run(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(FRONTIER)
    found = grid.load_frontier(path)
    assert list(found)[:5] == [f"fr-sigmoid-b{b}" for b in ("0.03", "0.1", "0.3", "1", "3")]
    assert len(found) == 5 + 6 + 5
    assert found["fr-ipo-b0.01"] == {
        "beta": 0.01, "beta_end": None, "label_smoothing": 0.0, "alpha": 0.5, "loss": "ipo",
        "hdpo_alpha": 1.0, "simpo_ratio": 0.5, "pair_strategy": "all", "divpo_rho": 0.3,
    }  # fmt: skip
    assert found["fr-alpha-03-b3"]["alpha"] == 0.3
    whole = sweep.with_frontier(grid.load_grid(path), found)
    assert "fr-sigmoid-b0.1" not in whole and "l1-dpo" in whole  # one configuration, run once
    assert len(whole) == 2 + len(found) - 1
    names_ = [c[5] for c in sweep.queue_commands(whole, seeds=[0, 1])]
    assert "fr-ipo-b0.01-s1" in names_ and len(names_) == 2 * len(whole)
    assert grid.load_frontier(ROOT / "grid.yaml") or True  # the study's file parses


def test_the_budget_study_is_levels_1_to_3_of_the_studys_frontier():
    """benchmarks/frontier.yaml (the wall time the README states) repeats grid.yaml's families:
    the same settings, β a subset of the study's, every loss of levels 1–3, SFT, 5 seeds."""
    budget, study = ROOT / "benchmarks" / "frontier.yaml", ROOT / "grid.yaml"
    points, full = grid.load_frontier(budget), grid.load_frontier(study)
    assert {n: full.get(n) for n in points} == points  # same name → same settings
    levels = grid.load_levels(study)
    losses = {s["loss"] for n, s in grid.load_grid(study).items() if levels.configs[n] < 4}
    assert {s["loss"] for s in points.values()} == losses - {"sft"}
    per_family = {}
    for name in points:
        per_family.setdefault(name.rsplit("-b", 1)[0], []).append(name)
    assert len(per_family) == 7 and all(len(v) == grid.MIN_BETAS for v in per_family.values())
    levels_run = grid.load_grid(budget)
    assert list(levels_run.values()) == [grid.load_grid(study)["l1-sft"]]
    assert grid.grid_seeds(budget) == [0, 1, 2, 3, 4]
    assert len(sweep.with_frontier(levels_run, points)) == 36


@pytest.mark.parametrize(
    "block, must_say",
    [
        ("frontier:\n  betas: [0.1, 0.3]\n  experiments: {s: {loss: sigmoid}}\n", "≥ 5 increasing"),
        ("frontier:\n  betas: [1, 0.3, 0.1, 0.03, 0.01]\n  experiments: {s: {loss: ipo}}\n", "≥ 5"),
        (
            "frontier:\n  betas: [0.01, 0.03, 0.1, 0.3, 1]\n"
            "  experiments: {s: {loss: ipo, beta: 1}}\n",
            "frontier.experiments.s: beta is swept",
        ),
        (
            "frontier:\n  betas: [0.01, 0.03, 0.1, 0.3, 1]\n  experiments: {s: {loss: sft}}\n",
            "sft has no β",
        ),
        ("frontier: [0.1]\n", "frontier: expected {betas"),
    ],
)
def test_a_bad_frontier_is_one_user_error(tmp_path, block, must_say):
    path = tmp_path / "grid.yaml"
    path.write_text(DEFAULTS + "experiments: {a: {loss: sft}}\n" + block)
    with pytest.raises(UserError, match=must_say):
        grid.load_frontier(path)


def test_level4_options_make_their_own_configurations():
    """H-DPO's α, SimPO's γ/β, EXO's ε and DivPO's pairs are part of a configuration; an option a
    loss does not read is not (α_H set on a DPO run changes nothing)."""
    base = {"loss": "sigmoid", "beta": 0.1, "beta_end": None, "hdpo_alpha": 1.2}
    assert names.settings_key(base) == names.settings_key({**base, "hdpo_alpha": 1.0})
    divpo = {**base, "pair_strategy": "divpo", "divpo_rho": 0.3}
    assert names.settings_key(divpo) != names.settings_key({**base, "pair_strategy": "all"})
    assert names.settings_key({**base, "pair_strategy": "all"}) == names.settings_key(base)
    assert names.describe(divpo) == ("0.1", "divpo ρ=0.3")
    hdpo = {**base, "loss": "hdpo"}
    assert names.describe(hdpo) == ("0.1", "α_H=1.2")
    assert names.settings_key(hdpo) != names.settings_key({**hdpo, "hdpo_alpha": 1.5})
    exo = {"loss": "exo_pair", "beta": 0.1, "label_smoothing": 0.001}
    assert names.describe(exo) == ("0.1", "ε=0.001")
    assert names.describe({"loss": "simpo", "beta": 2.0, "simpo_ratio": 0.5}) == ("2.0", "γ/β=0.5")
    # an experiment from before these keys existed is still the configuration it was
    old = {"loss": "cdpo", "beta": 0.1, "beta_end": None, "label_smoothing": 0.15, "alpha": 0.5}
    assert names.settings_key(old) == ("cdpo", 0.1, (("label_smoothing", 0.15),))

"""The experiment grid file (`grid.yaml`): its configurations, levels and seeds, checked.

The grid file lists the configurations (name → experiment-key settings) under the method level
they belong to, `levels: {<n>: {title, experiments}}`, or, without a level, under a top-level
`experiments:`. It is the only source of levels: :func:`load_levels` gives them to `prefdiv
compare` (:class:`Levels`); :func:`load_grid` gives the settings alone, which is what DVC gets.
:func:`replicates` expands it into the named experiments of a study, every configuration once per
seed (and train seed), `<configuration>-s<seed>[-t<train_seed>]` (`names.replicate_name`).

An optional `frontier:` sweeps β per loss (:func:`load_frontier`), for the comparisons at matched
KL and matched reward (`prefdiv.frontiers`). This module only reads the file; running it on
DVC's queue is `prefdiv.sweep`'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from prefdiv import names
from prefdiv.config import EXPERIMENT_KEYS as KEYS
from prefdiv.errors import UserError

SECTIONS = ("seeds", "defaults", "levels", "experiments", "frontier")  # the keys of a grid file
LEVEL_KEYS = ("title", "experiments")  # the keys of one level
FRONTIER_KEYS = ("betas", "experiments")  # the keys of the frontier
MIN_BETAS = 5  # β values a frontier needs per loss (a curve through fewer says little)
SEED_KEYS = ("seed", "train_seed")  # set per replicate, never in the grid file
SETTINGS = tuple(k for k in KEYS if k not in SEED_KEYS)  # what a configuration sets
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a DVC experiment name (a git ref part)


# --- the grid file -------------------------------------------------------------------------


def _read(path: str | Path) -> dict:
    """The grid file as a mapping; a missing, malformed or foreign file is a UserError."""
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such grid file (--grid names it; default grid.yaml)") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(spec, dict):
        raise UserError(f"{path}: expected a mapping with the keys {', '.join(SECTIONS)}")
    if unknown := [k for k in spec if k not in SECTIONS]:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(SECTIONS)}")
    return spec


def _settings(path: str | Path, where: str, settings) -> dict:
    """`settings` checked as a configuration's experiment keys (values are checked by the
    stages' params validation, in the queue)."""
    example = "e.g. {loss: sigmoid, beta: 0.1}"
    if not isinstance(settings, dict):
        raise UserError(f"{path}: {where}: expected a mapping of experiment keys, {example}")
    for key in settings:
        if key in SEED_KEYS:
            raise UserError(
                f"{path}: {where}: {key} is set per experiment by the grid "
                "(the file's `seeds:`, --seeds, --train-seeds)"
            )
        if key not in SETTINGS:
            raise UserError(f"{path}: {where}: unknown key {key!r}; allowed: {', '.join(SETTINGS)}")
    return settings


def _named(path: str | Path, where: str, configs) -> dict:
    """`configs` checked as a mapping of configuration name → settings (settings unchecked)."""
    if not isinstance(configs, dict) or not configs:
        raise UserError(f"{path}: {where}: expected a mapping of name → settings, none empty")
    for name in configs:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise UserError(
                f"{path}: experiment name {name!r}: letters, digits, '_', '.' and '-' only, "
                "starting with a letter or digit"
            )
    return configs


def _level(path: str | Path, level, block) -> dict:
    """Level `level` of the file's `levels:` checked: {title, experiments}."""
    where = f"levels.{level}"
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise UserError(f"{path}: levels: {level!r} is not a level; levels are integers ≥ 1")
    if not isinstance(block, dict):
        raise UserError(f"{path}: {where}: expected {{title: …, experiments: {{name: settings}}}}")
    if unknown := [k for k in block if k not in LEVEL_KEYS]:
        raise UserError(
            f"{path}: {where}: unknown key {unknown[0]!r}; allowed: {', '.join(LEVEL_KEYS)}"
        )
    title = block.get("title")
    if not isinstance(title, str) or not title.strip():
        raise UserError(f"{path}: {where}: no title (its figure panel's, e.g. `title: f-DPO`)")
    return block


def _entries(path: str | Path, spec: dict) -> list[tuple[str, int | None, str, object]]:
    """(name, level or None, where in the file, raw settings) of every configuration, in file
    order within `levels:` (level by level), then those of the top-level `experiments:`."""
    levels = spec.get("levels") or {}
    if not isinstance(levels, dict):
        raise UserError(f"{path}: levels: expected a mapping of level → {{title, experiments}}")
    entries = []
    for level, block in levels.items():
        configs = _named(
            path, f"levels.{level}.experiments", _level(path, level, block).get("experiments")
        )
        entries += [(n, level, f"levels.{level}.experiments.{n}", s) for n, s in configs.items()]
    if not entries and "experiments" not in spec:
        raise UserError(
            f"{path}: no configuration; list them (name → settings) under `levels: <n>: "
            "experiments:` or, without a level, under `experiments:`"
        )
    if "experiments" in spec:
        configs = _named(path, "experiments", spec["experiments"])
        entries += [(n, None, f"experiments.{n}", s) for n, s in configs.items()]
    seen: dict[str, str] = {}
    for name, _, where, _ in entries:
        if name in seen:
            raise UserError(f"{path}: {where}: {name} is also {seen[name]}; names are unique")
        seen[name] = where
    return entries


@dataclass(frozen=True)
class Levels:
    """The method levels of a grid file, by which `prefdiv compare` orders its tables and draws
    one figure panel each. The file is their only source: no level is inferred from a loss.

    `titles`: level → its title, ascending (panel `level <n>: <title>`); `configs`:
    configuration name → its level; `by_settings`: `names.settings_key` of a configuration's
    settings → its level, to place results known only by their settings (the reference study's
    published points). Configurations of the top-level `experiments:` have no level.
    """

    titles: dict[int, str]
    configs: dict[str, int]
    by_settings: dict[tuple, int]

    def of(self, experiment: str) -> int | None:
        """Level of `experiment` by its configuration's name (replicate suffix stripped,
        :func:`names.split_name`; a name without one is taken whole). None for a configuration in no
        level, or none of the grid (an ad hoc `dvc exp run -S loss=…`)."""
        split = names.split_name(experiment)
        return self.configs.get(split[0] if split else experiment)


def _load(path: str | Path) -> tuple[dict[str, dict], Levels]:
    spec = _read(path)
    defaults = _settings(path, "defaults", spec.get("defaults") or {})
    grid, levels = {}, {}
    for name, level, where, overrides in _entries(path, spec):
        grid[name] = {**defaults, **_settings(path, where, overrides)}
        if missing := [k for k in SETTINGS if k not in grid[name]]:
            raise UserError(
                f"{path}: {where}: no {', '.join(missing)} (set it there or under "
                "defaults:), so it would come from the workspace's params.yaml"
            )
        if level is not None:
            levels[name] = level
    titles = {lvl: spec["levels"][lvl]["title"].strip() for lvl in sorted(set(levels.values()))}
    by_settings: dict[tuple, int] = {}
    for name, level in levels.items():
        by_settings.setdefault(names.settings_key(grid[name]), level)
    return grid, Levels(titles, levels, by_settings)


def load_grid(path: str | Path) -> dict[str, dict]:
    """Configuration name → its experiment-key settings (defaults filled in; no seeds), every
    level's configurations in file order, then the top-level `experiments:`.

    Every configuration must set every key of `SETTINGS` (itself or through `defaults`): a key
    left out would come from whatever the workspace's `params.yaml` holds.
    """
    return _load(path)[0]


def load_levels(path: str | Path) -> Levels:
    """The grid file's method levels (:class:`Levels`)."""
    return _load(path)[1]


def _betas(path, where: str, betas) -> list[float]:
    if (
        not isinstance(betas, list)
        or len(betas) < MIN_BETAS
        or any(isinstance(b, bool) or not isinstance(b, int | float) or b <= 0 for b in betas)
        or sorted(set(betas)) != betas
    ):
        raise UserError(
            f"{path}: {where}: expected ≥ {MIN_BETAS} increasing β values > 0, log-spaced, "
            "e.g. [0.03, 0.1, 0.3, 1.0, 3.0]"
        )
    return [float(b) for b in betas]


def beta_name(family: str, beta: float) -> str:
    """`fr-<family>-b<β>`: a frontier configuration's name (`fr-sigmoid-b0.3`)."""
    return f"fr-{family}-b{beta:g}"


def load_frontier(path: str | Path) -> dict[str, dict]:
    """The grid file's β frontier: configuration name (:func:`beta_name`) → settings, every
    loss of `frontier.experiments` once per β of its own `betas` or the frontier's (constant β:
    a frontier entry sets neither `beta` nor `beta_end`). {} when the file has no frontier.

    `frontier: {betas: [...], experiments: {<family>: {loss: …, [alpha | label_smoothing],
    [betas: [...]]}}}`; the defaults of the file fill the other keys.
    """
    spec = _read(path)
    block = spec.get("frontier")
    if block is None:
        return {}
    if not isinstance(block, dict) or any(k not in FRONTIER_KEYS for k in block):
        raise UserError(f"{path}: frontier: expected {{betas: [...], experiments: {{...}}}}")
    default_betas = block.get("betas")
    defaults = _settings(path, "defaults", spec.get("defaults") or {})
    out: dict[str, dict] = {}
    taken = set(load_grid(path)) if spec.get("levels") or spec.get("experiments") else set()
    for family, raw in _named(path, "frontier.experiments", block.get("experiments")).items():
        where = f"frontier.experiments.{family}"
        if not isinstance(raw, dict):
            raise UserError(f"{path}: {where}: expected a mapping of experiment keys")
        raw = dict(raw)
        betas = _betas(path, f"{where}.betas" if "betas" in raw else "frontier.betas",
                       raw.pop("betas", default_betas))  # fmt: skip
        if swept := [k for k in ("beta", "beta_end") if k in raw]:
            raise UserError(f"{path}: {where}: {swept[0]} is swept by the frontier's betas")
        settings = {**defaults, **_settings(path, where, raw), "beta_end": None}
        if settings.get("loss") == "sft":
            raise UserError(f"{path}: {where}: sft has no β; it is the frontier's KL = 0 point")
        for beta in betas:
            name = beta_name(family, beta)
            if name in taken or name in out:
                raise UserError(f"{path}: {where}: {name} is also a configuration's name")
            out[name] = {**settings, "beta": beta}
            if missing := [k for k in SETTINGS if k not in out[name]]:
                raise UserError(f"{path}: {where}: no {', '.join(missing)} (set it or defaults:)")
    return out


def check_seeds(values) -> list[int]:
    """`values` (ints, or their decimal strings) as seeds: each an integer ≥ 0, none repeated.

    Raises ValueError naming the first bad value.
    """
    seeds: list[int] = []
    for v in values:
        text = str(v).strip()
        if isinstance(v, bool) or not re.fullmatch(r"-?\d+", text):
            raise ValueError(f"{v!r} is not an integer; seeds are integers ≥ 0, e.g. 0,1,2")
        seed = int(text)
        if seed < 0:
            raise ValueError(f"{seed} is negative; seeds are integers ≥ 0, e.g. 0,1,2")
        if seed in seeds:
            raise ValueError(f"{seed} is given twice; each seed runs once")
        seeds.append(seed)
    if not seeds:
        raise ValueError("no seed given, e.g. 0,1,2")
    return seeds


def grid_seeds(path: str | Path) -> list[int]:
    """The study's seeds: `seeds` of the grid file ([0] when it has none)."""
    seeds = _read(path).get("seeds", [0])
    if not isinstance(seeds, list):
        raise UserError(f"{path}: seeds: expected a list of integers ≥ 0, e.g. [0, 1, 2]")
    try:
        return check_seeds(seeds)
    except ValueError as e:
        raise UserError(f"{path}: seeds: {e}") from None


# --- replicates ----------------------------------------------------------------------------


def replicates(grid: dict[str, dict], seeds=(0,), train_seeds=(0,)) -> dict[str, dict]:
    """Experiment name → settings: every configuration once per seed and train seed, with both
    seeds set. Names carry the train seed only when more than one, or a nonzero one, is asked.

    In queue order: first the grid's first configuration at every seed, so parallel workers start
    by computing each seed's upstream stages once; then the rest seed by seed, each finding its
    seed's stages in DVC's run cache. Seed by seed, not configuration by configuration: with two
    workers and five seeds, the fifth seed's upstream stages (≈ 9 min) run on one worker while the
    other works through seed 0, instead of the other starting that fifth seed's first experiment
    before its stages exist and computing them a second time (the budget run of 2026-12-04 lost
    ≈ 5.5 worker-minutes so).
    """
    named = len(train_seeds) > 1 or any(train_seeds)
    head = [(config, seed, train_seeds[0]) for config in list(grid)[:1] for seed in seeds]
    rest = [
        (config, seed, t)
        for seed in seeds
        for config in grid
        for t in train_seeds
        if (config, seed, t) not in head
    ]
    return {
        names.replicate_name(config, seed, t if named else None): {
            **grid[config],
            "seed": seed,
            "train_seed": t,
        }
        for config, seed, t in head + rest
    }

"""Settings of a user model (docs/method.md §11), resolved in one place for `vaegaps.measure` and
for the pipeline's `user_models` section. No torch here: the Snakefile imports it.

A user model's settings are the keys of `$defs/user_model` in src/vaegaps/config.schema.yaml
(model, data, likelihood, family, ...) and its `evaluation` changes. Keys left out take the
schema's defaults: for the evaluation, first the user-model defaults written there (the estimator
settings of workflow/presets/fashion_cpu.yaml), then the `evaluation` section's own. The study's
`evaluation` section (for the built-in datasets) never applies to a user model, so a model gives
the same numbers from Python and from the pipeline under the same settings.
"""

from __future__ import annotations

import copy
import functools

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from .config import (
    FAMILIES,
    check_refinement_steps,
    deep_merge,
    fill_defaults,
    load_schema,
    local_config,
    refinement_config,
)
from .errors import VaegapsError

EVALUATION_KEYS = ("split", "n_points", "chunk_size", "parts", "amortized", "local", "ais", "refinement")


@functools.lru_cache(maxsize=1)
def _schemas() -> tuple[dict, dict]:
    """The schema and its user-model part (read once; never modified)."""
    schema = load_schema()
    return schema, schema["$defs"]["user_model"]


def _check(entry: dict, where: str, need_files: bool) -> None:
    schema, sub = _schemas()
    sub = {k: v for k, v in sub.items() if need_files or k != "required"}
    error = best_match(Draft202012Validator({**sub, "$defs": schema["$defs"]}).iter_errors(entry))
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path)
        if not need_files:   # vaegaps.measure's keyword arguments: its evaluation keys are top level
            path = path.removeprefix("evaluation.").removeprefix("evaluation")
        raise VaegapsError(f"{where} '{path}': {error.message}" if path else f"{where}: {error.message}")


def evaluation_defaults() -> dict:
    """The evaluation settings of a user model that changes none: the user-model defaults of the
    schema, then the evaluation section's defaults."""
    schema, sub = _schemas()
    ev = copy.deepcopy(sub["properties"]["evaluation"]["default"])
    return fill_defaults(ev, schema["$defs"]["evaluation"], schema)


def resolve(entry: dict, where: str = "user model", need_files: bool = True) -> dict:
    """A user model's settings, checked against the schema (one line naming a bad key) and with
    every default filled; `evaluation` fully resolved, per-family local settings spelled out."""
    entry = copy.deepcopy(dict(entry))
    _check(entry, where, need_files)
    schema, sub = _schemas()
    changes = entry.pop("evaluation", {}) or {}
    out = fill_defaults(entry, {k: v for k, v in sub.items() if k != "required"}, schema)
    ev = deep_merge(evaluation_defaults(), changes)
    for family in FAMILIES:
        key = f"refinement.{family}.steps" if "steps" in ev["refinement"].get(family, {}) else "refinement.steps"
        check_refinement_steps(refinement_config(ev["refinement"], family)["steps"],
                               f"{where} '{'evaluation.' if need_files else ''}{key}'")
    out["evaluation"] = ev
    out["local"] = {f: local_config(ev["local"], f) for f in qstar_families(out)}
    return out


def qstar_families(settings: dict) -> list[str]:
    """The families whose q* is fitted: `local_families`, with `family` added (FFG first, since a
    flow's q* starts from the optimal FFG)."""
    fams = list(dict.fromkeys([*settings["local_families"], *([settings["family"]] if settings["family"] else [])]))
    if any(f != "ffg" for f in fams) and "ffg" not in fams and settings["evaluation"]["local"]["init"] != "prior":
        fams.insert(0, "ffg")   # the flows' optimal-FFG start
    return sorted(fams, key=lambda f: f != "ffg")


def estimators(settings: dict) -> list[str]:
    """The estimators a user model runs, in order: L[q], each q* (FFG first), AIS."""
    return ["amortized", *(f"local_{f}" for f in qstar_families(settings)), "ais"]


def split_settings(settings: dict) -> tuple[dict, dict]:
    """keyword settings of `vaegaps.measure` -> (model keys, evaluation changes)."""
    ev = {k: settings[k] for k in EVALUATION_KEYS if k in settings and settings[k] is not None}
    rest = {k: v for k, v in settings.items() if k not in EVALUATION_KEYS}
    return rest, ev


def measure_settings(**settings) -> dict:
    """The resolved settings of one `vaegaps.measure` call (its keyword arguments)."""
    rest, ev = split_settings(settings)
    return resolve({**rest, "evaluation": ev}, "vaegaps.measure setting", need_files=False)


def user_models(config: dict) -> dict[str, dict]:
    """The study's `user_models`, each resolved (Snakefile)."""
    out = {}
    for name, entry in (config.get("user_models") or {}).items():
        s = resolve(entry, f"config error at user_models.{name}")
        ev = s["evaluation"]
        for what, n in (("evaluation.n_points", ev["n_points"]), ("bdmc_points", s["bdmc_points"])):
            if ev["parts"] > n:
                raise VaegapsError(f"config error at 'user_models.{name}': evaluation.parts ({ev['parts']}) is "
                                   f"more than {what} ({n}); lower parts")
        out[name] = s
    return out

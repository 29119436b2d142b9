"""A study across its experiments (no torch: imported by the Snakefile): the checks of a validated
config that span Table 2 and every experiment, the settings each experiment's rules read, and the
resolved record of every setting (results/config.resolved.yaml). The experiments are those of the
registry (vaegaps.pipeline.experiments, src/vaegaps/pipeline/experiments.yaml), never named one by
one here. No stage imports this module: editing it or the registry reruns no job.

python -m vaegaps.pipeline.study STUDY.yaml prints a study's estimator settings, fully resolved (the
block of docs/method.md §10 for the paper preset).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from ..config import (
    FAMILIES,
    SCHEMA,
    check_refinement_steps,
    deep_merge,
    evaluation_config,
    local_config,
    model_config,
    refinement_config,
    split_ref,
    validate,
)
from ..errors import VaegapsError
from . import experiments as registry


def _part(section: dict, part: str):
    """`section` itself for part "", else its key `part`."""
    return section[part] if part else section


def experiment_settings(config: dict, name: str) -> dict:
    """The settings experiment `name`'s rules read: its section with each of its evaluation
    overrides (experiments.yaml, `overrides`) applied to its dataset's evaluation settings, only
    the keys it names (over_training's `evaluation`, figure2's `local`); {} when not configured."""
    exp = registry.EXPERIMENTS[name]
    section = exp.section(config)
    if not section:
        return {}
    out = dict(section)
    for key, part in exp.overrides.items():
        out[key] = deep_merge(_part(evaluation_config(config, section["dataset"]), part), section.get(key, {}))
    return out


def _record(config: dict, exp) -> dict:
    """An experiment's resolved section (results/config.resolved.yaml): its settings, an override of
    a whole evaluation section spelled out per family as every evaluation is, and, per Table 2
    dataset, the evaluation parts it declares (`per_dataset`)."""
    out = copy.deepcopy(experiment_settings(config, exp.name))
    for key, part in exp.overrides.items():
        if part == "":
            out[key] = _resolved_evaluation(out[key])
    for key, part in exp.per_dataset.items():
        out[key] = {d: _part(evaluation_config(config, d), part) for d in config["datasets"]}
    return out


def _resolved_evaluation(ev: dict) -> dict:
    """An evaluation section with the local and refinement settings spelled out per family."""
    return {**ev, "local": {f: local_config(ev["local"], f) for f in FAMILIES},
            "refinement": {f: refinement_config(ev["refinement"], f) for f in FAMILIES}}


def resolved_config(config: dict) -> dict:
    """Every setting a run uses, fully resolved: the run keys, each trained model's settings,
    each dataset's evaluation, and each experiment's own evaluation settings. Written to
    results/config.resolved.yaml."""
    run = {k: config[k] for k in ("results", "device", "seed", "threads", "datasets", "families", "data")}
    models = {}
    for dataset in config["datasets"]:
        for variant in config["variants"]:
            for family in FAMILIES:
                models[f"{dataset}/{variant}/{family}"] = model_config(config, dataset, variant, family)
    # every experiment section, in the study's order, each resolved (`_record`)
    exp = {name: _record(config, registry.EXPERIMENTS[name]) for name in config.get("experiments", {})}
    return {**run, "evaluation": {d: _resolved_evaluation(evaluation_config(config, d)) for d in evaluated_datasets(config)},
            "experiments": exp, "models": models}


def evaluated_datasets(config: dict) -> list[str]:
    """Every dataset a study evaluates (and BDMC certifies): Table 2's and each experiment's."""
    datasets = set(config.get("datasets", []))
    for exp in registry.configured(config):
        datasets |= {*exp.dataset_names(config), *(s[0] for s in exp.evaluation_sets(config))}
    return sorted(datasets)


def check_parts(config: dict) -> None:
    """Every evaluation split into `parts` jobs needs at least one datapoint per part, on every
    dataset evaluated (an experiment's included: BDMC runs there too)."""
    bdmc_points = config["experiments"].get("bdmc", {}).get("n_points")
    for dataset in evaluated_datasets(config):
        ev = evaluation_config(config, dataset)
        for what, n in (("evaluation.n_points", ev["n_points"]), ("experiments.bdmc.n_points", bdmc_points)):
            if n is not None and ev["parts"] > n:
                raise VaegapsError(f"config error: evaluation.parts ({ev['parts']}) for {dataset} is more "
                                   f"than {what} ({n}); lower parts")


def check_refinement(config: dict) -> None:
    """Every dataset's refinement grid, per family (`check_refinement_steps`)."""
    for dataset in evaluated_datasets(config):
        refinement = evaluation_config(config, dataset)["refinement"]
        override = config.get("dataset_overrides", {}).get(dataset, {}).get("evaluation", {}).get("refinement", {})
        for family in FAMILIES:   # the key that set the grid: a family's own, else the shared one
            own = "steps" in refinement.get(family, {})
            src = override.get(family, {}) if own else override
            base = f"dataset_overrides.{dataset}.evaluation.refinement" if "steps" in src else "evaluation.refinement"
            key = f"{base}.{family}.steps" if own else f"{base}.steps"
            check_refinement_steps(refinement_config(refinement, family)["steps"], f"config error at '{key}'")


def variant_refs(config: dict) -> list[tuple[str, str]]:
    """(config key, variant) of every variant the study names outside `variants:`: the models
    of each experiment (experiments.yaml, `models`) and each init_decoder."""
    refs = [ref for exp in registry.EXPERIMENTS.values() for ref in exp.variant_refs(config)]
    for name, variant in config["variants"].items():
        ref = (variant.get("train") or {}).get("init_decoder")
        if ref and not ref.endswith(".pt"):
            refs.append((f"variants.{name}.train.init_decoder", split_ref(ref)[0]))
    return refs


def check_variants(config: dict) -> None:
    """Every variant an experiment or an init_decoder names is defined (before any rule reads it)."""
    for key, variant in variant_refs(config):
        if variant not in config["variants"]:
            raise VaegapsError(f"config error at '{key}': unknown variant {variant!r}; define it under "
                               f"variants: or use one of {sorted(config['variants'])}")


def estimator_settings(resolved: dict) -> dict:
    """The part of a resolved study that docs/method.md §10 states for the paper preset: each
    dataset's evaluation, each experiment's own, and the widths of every trained model's family."""
    exp = resolved["experiments"]
    widths = {name: {k: m["model"][k] for k in ("z_dim", "encoder_hidden", "decoder_hidden", "flow_hidden",
                                                "flow_steps", "realnvp_hidden", "flow_context")}
              for name, m in resolved["models"].items() if name.endswith("/ffg")}
    # each experiment's `stated` parts (experiments.yaml); None where the study leaves it out
    stated = {label: _part(exp[e.name], key) if e.name in exp else None
              for e in registry.EXPERIMENTS.values() for label, key in e.stated.items()}
    return {"evaluation": resolved["evaluation"], **stated, "models": widths}


def main(argv=None) -> None:
    """python -m vaegaps.pipeline.study STUDY.yaml: print its estimator settings, fully resolved."""
    import sys

    path = (argv or sys.argv[1:])[0]
    resolved = resolved_config(validate(yaml.safe_load(Path(path).read_text()), SCHEMA))
    print(yaml.safe_dump(estimator_settings(resolved), sort_keys=False, default_flow_style=None, width=110), end="")


if __name__ == "__main__":
    main()

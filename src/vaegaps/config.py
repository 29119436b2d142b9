"""Config validation and the merged settings of one model (no torch: imported by the Snakefile)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from .errors import VaegapsError


def _with_defaults(cls):
    """A validator that also fills in the schema's defaults (as Snakemake's validate does)."""
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


def validate(config: dict, schema_path: str | Path) -> dict:
    """Check `config` against the schema, fill defaults, and fail with one line naming the key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    error = best_match(_with_defaults(Draft202012Validator)(schema).iter_errors(config))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise VaegapsError(f"config error at '{where}': {error.message}; see {schema_path}")
    return config


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of base with override's keys replaced recursively (lists are replaced, not merged)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_config(config: dict, dataset: str, variant: str, family: str) -> dict:
    """Everything that determines one trained model: seed, device, model and train sections
    after the dataset's and the variant's overrides, with the encoder family set."""
    if variant not in config["variants"]:
        raise VaegapsError(f"unknown variant {variant!r}; defined variants: {sorted(config['variants'])}")
    cfg = {"seed": config["seed"], "device": config["device"], "model": config["model"], "train": config["train"]}
    override = config.get("dataset_overrides", {}).get(dataset, {})
    cfg = deep_merge(cfg, {k: v for k, v in override.items() if k != "evaluation"})
    cfg = deep_merge(cfg, config["variants"][variant])
    cfg["model"]["family"] = family
    ref = cfg["train"].get("init_decoder")
    if ref and not ref.endswith(".pt"):  # "VARIANT/FAMILY" of the same dataset
        cfg["train"]["init_decoder"] = model_path(config, dataset, ref)
    return cfg


def model_path(config: dict, dataset: str, ref: str) -> str:
    """Where the workflow keeps the model "VARIANT/FAMILY" of `dataset`."""
    return f"{config['results']}/models/{dataset}/{ref}/model.pt"


def digest(obj) -> str:
    """A short stable hash of a JSON-able object (to tie outputs to the settings that made them)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def evaluation_config(config: dict, dataset: str) -> dict:
    """The evaluation settings for `dataset`: the global ones with the dataset's overrides."""
    override = config.get("dataset_overrides", {}).get(dataset, {}).get("evaluation", {})
    return deep_merge(config["evaluation"], override)


def check_parts(config: dict) -> None:
    """Every evaluation split into `parts` jobs needs at least one datapoint per part."""
    experiments = config.get("experiments") or {}
    bdmc_points = experiments.get("bdmc", {}).get("n_points", 20) if experiments else None
    for dataset in config["datasets"]:
        ev = evaluation_config(config, dataset)
        for what, n in (("evaluation.n_points", ev["n_points"]), ("experiments.bdmc.n_points", bdmc_points)):
            if n is not None and ev["parts"] > n:
                raise VaegapsError(f"config error: evaluation.parts ({ev['parts']}) for {dataset} is more "
                                   f"than {what} ({n}); lower parts")


def split_ref(ref: str) -> tuple[str, str]:
    """"VARIANT/FAMILY" -> (variant, family)."""
    variant, _, family = ref.partition("/")
    return variant, family

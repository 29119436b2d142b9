"""Config validation and the merged settings of one model, dataset or family (no torch: imported by
the Snakefile). A whole study's checks and resolved record, across its experiments: vaegaps.pipeline.study."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from .errors import VaegapsError


def _deref(schema: dict, root: dict) -> dict:
    """The schema a local "$ref": "#/$defs/NAME" points to (merged with its sibling keys)."""
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = {**root["$defs"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def fill_defaults(instance: dict, schema: dict, root: dict) -> dict:
    """Set every missing key that has a schema default, recursively. A sub-schema marked
    `x-partial` (an override: per-family local settings, an experiment's changes) is left as
    written, so an override never silently resets what it does not name."""
    schema = _deref(schema, root)
    for name, sub in schema.get("properties", {}).items():
        if sub.get("x-partial"):
            continue
        sub = _deref(sub, root)
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(name), dict) and "properties" in sub:
            fill_defaults(instance[name], sub, root)
    return instance


# package data (pyproject.toml), so an installed wheel finds it as the Snakefile does
SCHEMA = Path(__file__).with_name("config.schema.yaml")
# the experiment registry's declarations (package data of the pipeline layer, which reads them:
# vaegaps.pipeline.experiments): each one's `schema` is its section of `experiments:`. Read as data
# here, never imported, so the library imports nothing of the pipeline and the stages that import
# this module do not import the registry's code (it is no code input of theirs).
EXPERIMENT_DECLARATIONS = Path(__file__).parent / "pipeline" / "experiments.yaml"


def load_schema(schema_path: str | Path = SCHEMA) -> dict:
    """The config schema (src/vaegaps/config.schema.yaml) as a dict, with the section of every
    experiment under `experiments:` from its declaration (src/vaegaps/pipeline/experiments.yaml)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    declared = yaml.safe_load(EXPERIMENT_DECLARATIONS.read_text())
    schema["properties"]["experiments"]["properties"] = {n: e["schema"] for n, e in declared.items() if "schema" in e}
    return schema


@functools.cache
def _package_schema() -> dict:
    """The package's schema, read once per process (callers never change it: `defaults` copies)."""
    return load_schema()


def defaults(section: str) -> dict:
    """The schema's defaults of one base section ('model', 'train', 'evaluation', 'local', 'ais',
    ...): the settings a caller from Python starts from before changing a few, and the defaults
    of the estimators' signatures (vaegaps.ais, vaegaps.local_opt), so a direct call and a study
    that leaves a key out use the same value."""
    schema = _package_schema()
    return fill_defaults({}, schema["$defs"][section], schema)


# The variational families by name, for the torch-free callers (this module, the Snakefile's
# wildcards): the schema's `$defs.family`, kept equal to the registry vaegaps.families.FAMILIES by
# tests/test_config_registry.py (that module imports torch). TABLE_FAMILIES: those a study's
# `families` (Table 2, Table 3) may train, `$defs.table_family`.
FAMILIES: tuple[str, ...] = tuple(_package_schema()["$defs"]["family"]["enum"])
TABLE_FAMILIES: tuple[str, ...] = tuple(_package_schema()["$defs"]["table_family"]["enum"])


# "integer" means an int: 1000.0 is read as 1000 (below), never passed on as a float.
_Validator = validators.extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, x: isinstance(x, int) and not isinstance(x, bool)))
# Numbers as YAML 1.2 writes them: PyYAML (YAML 1.1) leaves 1e6, 1.0e6 and 1e-4 as strings.
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_KEEP = object()


def _scalar(text: str):
    """The number, bool or null a string spells in YAML (a number in exponent form too), else _KEEP."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return _KEEP
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    return value if value is None or isinstance(value, (bool, int, float)) else _KEEP


def _fixed(error, validator):
    """The value that mends a failed `type` (or `enum`) check: a string read as the scalar it
    spells, an integral float as an int where an integer is wanted; _KEEP if none passes."""
    value = error.instance
    if error.validator == "enum":
        new = _scalar(value) if isinstance(value, str) else _KEEP
        ok = new is not _KEEP and any(type(new) is type(v) and new == v for v in error.validator_value)
        return new if ok else _KEEP
    types = [error.validator_value] if isinstance(error.validator_value, str) else list(error.validator_value)
    new = _scalar(value) if isinstance(value, str) else value
    if isinstance(new, float) and new.is_integer() and "integer" in types:
        new = int(new)
    if new is _KEEP or not (new is None or isinstance(new, (bool, int, float))):
        return _KEEP
    return new if any(validator.is_type(new, t) for t in types) else _KEEP


def coerce_scalars(config: dict, schema: dict) -> dict:
    """Read, in place, the values that fail a `type` (or `enum`) check as the scalars they spell:
    the workflow passes nested --config values as strings (`--config 'train={lr: 0.5}'` gives '0.5'),
    and PyYAML reads 1.0e6 as a string. Only where the schema does not accept that string, so a
    name, a path or "auto" stays a string."""
    validator = _Validator(schema)
    for _ in range(5):
        fixes = [(list(e.absolute_path), _fixed(e, validator)) for e in validator.iter_errors(config)
                 if e.validator in ("type", "enum") and e.absolute_path]
        fixes = [(path, value) for path, value in fixes if value is not _KEEP]
        if not fixes:
            break
        for path, value in fixes:
            parent = config
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = value
    return config


def validate(config: dict, schema_path: str | Path) -> dict:
    """Check `config` against the schema, fill the schema's defaults, and fail with one line
    naming the key. Values given as strings where the schema wants a number, bool or null (as
    every nested --config value is) are read as YAML scalars first (`coerce_scalars`)."""
    schema = load_schema(schema_path)
    coerce_scalars(config, schema)
    for stage in ("as written", "with defaults"):
        error = best_match(_Validator(schema).iter_errors(config))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            raise VaegapsError(f"config error at '{where}': {error.message}; see {schema_path}")
        if stage == "as written":
            fill_defaults(config, schema, schema)
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


# Settings that cannot change the trained weights stay out of the training hash.
_HASH_EXEMPT = ("checkpoint_every",)


def config_hash(cfg: dict) -> str:
    """Hash of everything in one model's settings (`model_config`) that determines its trained
    weights: model, train (less checkpoint_every) and seed. The training checkpoint records it."""
    train = {k: v for k, v in cfg["train"].items() if k not in _HASH_EXEMPT}
    blob = json.dumps({"model": cfg["model"], "train": train, "seed": cfg["seed"]}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def settings_key(config: dict, dataset: str, variant: str, family: str) -> str:
    """16 hex digits naming the settings one model is trained with: its `config_hash` and, for a
    model that loads another's decoder, that model's key (its weights are an input too). Each
    settings' training lives in its own folder (results/trained/…/KEY/, results/resume/…/KEY/),
    so training new settings never touches the weights of the old ones."""
    cfg = model_config(config, dataset, variant, family)
    base, prefix = cfg["train"].get("init_decoder"), model_path(config, dataset, "")[:-len("/model.pt")]
    if base and base.startswith(prefix):  # a model of this workflow: VARIANT/FAMILY
        base = settings_key(config, dataset, *split_ref(base[len(prefix):-len("/model.pt")]))
    return digest({"config_hash": config_hash(cfg), "base": base})


def digest(obj) -> str:
    """A short stable hash of a JSON-able object (to tie outputs to the settings that made them)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def evaluation_config(config: dict, dataset: str) -> dict:
    """The evaluation settings for `dataset`: the global ones with the dataset's overrides."""
    override = config.get("dataset_overrides", {}).get(dataset, {}).get("evaluation", {})
    return deep_merge(config["evaluation"], override)


LOCAL_METHODS = ("auto", "newton", "adam", "cycles")


def local_method(method: str, family: str) -> str:
    """q*'s optimiser for `family`: 'auto' is Newton for FFG and Adam in cycles for a flow family;
    a method made for one kind of family named for the other is an error."""
    if method not in LOCAL_METHODS:
        raise VaegapsError(f"method must be one of {', '.join(LOCAL_METHODS)}, got {method!r}")
    if method == "auto":
        return "newton" if family == "ffg" else "cycles"
    if method == "newton" and family != "ffg":
        raise VaegapsError(f"method 'newton' finds q*_FFG only; for the {family} family use 'cycles' or 'adam'")
    if method == "cycles" and family == "ffg":
        raise VaegapsError("method 'cycles' is for flow families; for FFG use 'newton' or 'adam'")
    return method


def local_config(local: dict, family: str) -> dict:
    """The local-optimisation settings of one family: the shared keys with that family's changes,
    its method resolved (`local_method`)."""
    shared = {k: v for k, v in local.items() if k not in FAMILIES}
    cfg = deep_merge(shared, local.get(family, {}))
    if "method" not in local.get(family, {}) and cfg.get("method") in ("newton", "cycles"):
        # a shared method made for one kind of family leaves the other kind at auto
        cfg["method"] = cfg["method"] if (cfg["method"] == "newton") == (family == "ffg") else "auto"
    if "method" in cfg:
        try:
            cfg["method"] = local_method(cfg["method"], family)
        except VaegapsError as e:
            raise VaegapsError(f"config error at 'evaluation.local' ({family}): {e}") from None
    return cfg


def refinement_config(refinement: dict, family: str) -> dict:
    """The refinement-curve settings of one family (docs/method.md §12): as `local_config`, the
    shared keys of `evaluation.refinement` with that family's changes."""
    return local_config(refinement, family)


def starts_from_qstar_ffg(local: dict, family: str) -> bool:
    """Whether q*_{family} starts (also) from q*_FFG: every flow family, unless the local
    optimisation starts from the prior (docs/method.md §4)."""
    return family != "ffg" and local["init"] != "prior"


def check_refinement_steps(steps: list[int], where: str) -> None:
    """The refinement grid must increase (the schema checks the rest): one line naming `where`."""
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise VaegapsError(f"{where}: the step counts must be increasing, got {steps}")


def write_resolved(resolved: dict, path: str | Path) -> None:
    """The resolved settings as YAML, written atomically (unchanged files are left alone)."""
    from .io import atomic_path

    text = yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None, width=100)
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def ais_procedure(ais: dict) -> str:
    """The AIS procedure of an `ais` settings section, in words (what BDMC certifies)."""
    tuning = (f"step sizes pilot-tuned on {ais['pilot_chains']} chains, then frozen" if ais["tuning"] == "pilot"
              else "step sizes adapted online")
    start = "the prior" if ais["init"] == "prior" else "the encoder's q(z|x)"
    return (f"AIS from {start}, {ais['n_chains']} chains x {ais['n_intermediate']} distributions, "
            f"{ais['schedule']} schedule, {ais['leapfrog_steps']} leapfrog steps, {tuning}")


def split_ref(ref: str) -> tuple[str, str]:
    """"VARIANT/FAMILY" -> (variant, family)."""
    variant, _, family = ref.partition("/")
    return variant, family

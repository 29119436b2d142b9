"""The schema is the one home of defaults and names: the estimators' signature defaults are the
schema's, and its dataset and family names are the registries' (datasets.yaml, vaegaps.families),
each written once."""

import inspect
import re

from vaegaps import config
from vaegaps.ais import ais, bdmc
from vaegaps.datasets import DATASETS
from vaegaps.families import FAMILIES
from vaegaps.local_opt import optimize_local
from vaegaps.pipeline.study import resolved_config
from vaegaps.refinement import refine_curve

SCHEMA = config.load_schema()


def _signature_defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


def test_ais_and_bdmc_default_to_the_schema_ais_settings():
    ais_defaults = config.defaults("ais")
    keys = ("n_chains", "n_intermediate", "schedule", "leapfrog_steps", "step_size", "target_accept")
    assert ais_defaults["schedule"] == "linear" and ais_defaults["n_intermediate"] == 10000  # the paper's
    for fn in (ais, bdmc):   # (their `init` is the start's tensors, not the schema's choice of start)
        sig = _signature_defaults(fn)
        assert {k: sig[k] for k in keys} == {k: ais_defaults[k] for k in keys}, fn.__name__


def test_optimize_local_defaults_to_the_schema_local_settings():
    local = config.defaults("local")
    sig = _signature_defaults(optimize_local)
    shared = {k: local[k] for k in sig if k in local and k != "init"}   # `init`: the start's tensors
    assert len(shared) == 16 and {k: sig[k] for k in shared} == shared
    flow_steps = config.defaults("model")["flow_steps"]
    assert sig["flow_steps"] == flow_steps and _signature_defaults(refine_curve)["flow_steps"] == flow_steps


def _enums(node, path=()):
    """(path, enum list) of every `enum` in the schema."""
    if isinstance(node, dict):
        if "enum" in node:
            yield path, node["enum"]
        for k, v in node.items():
            yield from _enums(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _enums(v, (*path, i))


def test_schema_names_are_the_registries_written_once():
    defs = SCHEMA["$defs"]
    assert defs["dataset"]["enum"] == list(DATASETS)
    assert defs["family"]["enum"] == list(FAMILIES) == list(config.FAMILIES)
    assert set(defs["table_family"]["enum"]) <= set(FAMILIES)
    assert re.fullmatch(r"\^\[A-Za-z0-9_\]\+/\((.*)\)\$", defs["model_ref"]["pattern"]).group(1).split("|") == list(FAMILIES)
    assert defs["user_model"]["properties"]["family"]["enum"] == [None, *FAMILIES]
    # every other list of these names is a $ref to the one above
    for path, enum in _enums(SCHEMA):
        if path[:2] in {("$defs", "dataset"), ("$defs", "family"), ("$defs", "table_family")}:
            continue
        if path == ("$defs", "user_model", "properties", "family"):
            continue
        assert not set(enum) & (set(DATASETS) | set(FAMILIES)), path


def test_a_study_resolves_every_registered_family():
    cfg = config.validate({"datasets": ["digits"]}, config.SCHEMA)
    models = resolved_config(cfg)["models"]
    assert sorted(k.split("/")[-1] for k in models) == sorted(FAMILIES)

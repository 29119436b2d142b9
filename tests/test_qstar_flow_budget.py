"""scripts/qstar_flow_budget.py: each --variant is the preset with its evaluation.local.flow
changes, checked against the schema; a bad one is a one-line error naming it."""

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "workflow" / "presets" / "fashion_cpu_1000.yaml"


@pytest.fixture(scope="module")
def script():
    return runpy.run_path(str(ROOT / "scripts" / "qstar_flow_budget.py"), run_name="budget")


def _args(*variants):
    return type("Args", (), {"preset": str(PRESET), "variant": list(variants)})()


def test_a_variant_changes_only_the_flow_keys_it_names(script):
    out = script["variants"](_args('fast={"cycle_lr": 0.004, "n_samples": 100}'), "fashion_mnist")
    local = script["local_config"](out["fast"]["local"], "flow")
    assert local["cycle_lr"] == 0.004 and local["n_samples"] == 100
    assert local["cycle_steps"] == 400 and local["probe_steps"] == 100   # the preset's own
    assert script["local_config"](out["fast"]["local"], "ffg")["n_samples"] == 50   # FFG untouched


@pytest.mark.parametrize("spec, says", [
    ('bad={"cycle_lr": -1}', "'bad': config error at 'evaluation.local.flow.cycle_lr'"),
    ('bad={"cycle_lr": 1', "JSON after '=' does not parse"),
    ("bad", "must be NAME=JSON object"),
    ('bad=[1]', "must be NAME=JSON object"),
])
def test_a_bad_variant_is_one_line_naming_it(script, spec, says):
    with pytest.raises(SystemExit) as e:
        script["variants"](_args(spec), "fashion_mnist")
    message = str(e.value)
    assert says in message and "\n" not in message

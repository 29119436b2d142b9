"""workflow/presets/paper_protocol.yaml runs the paper's own estimator protocol (q* and AIS from the
prior, online AIS step sizes, the paper's q* optimiser and AIS schedule) and is otherwise paper.yaml."""

from pathlib import Path

import yaml

from vaegaps.config import validate
from vaegaps.pipeline.study import estimator_settings, resolved_config

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "workflow" / "presets"
SCHEMA = REPO / "src" / "vaegaps" / "config.schema.yaml"
PAPER_LOCAL = {"init": "prior", "method": "adam", "n_samples": 100, "lr": 1e-3, "check_every": 100, "patience": 10}
PAPER_AIS = {"init": "prior", "n_chains": 100, "n_intermediate": 10000, "schedule": "linear",
             "leapfrog_steps": 10, "step_size": 0.01, "target_accept": 0.65, "tuning": "online"}


def _load(name):
    return yaml.safe_load((PRESETS / name).read_text())


def _estimators(name):
    return estimator_settings(resolved_config(validate(_load(name), SCHEMA)))


def _local_and_ais_sections(settings):
    """Every (local settings of one family, AIS settings) the study resolves to, wherever they sit:
    each dataset's evaluation, the over-training experiment, Figure 2's q*, and BDMC."""
    evals = list(settings["evaluation"].values()) + [settings["over_training"]]
    locals_ = [fam for ev in evals for fam in ev["local"].values()] + [settings["figure2_local"]]
    ais = [ev["ais"] for ev in evals] + list(settings["bdmc"]["ais"].values())
    return locals_, ais


def test_paper_protocol_estimates_as_the_paper_did_everywhere():
    locals_, ais = _local_and_ais_sections(_estimators("paper_protocol.yaml"))
    assert locals_ and ais
    for local in locals_:
        assert {k: local[k] for k in PAPER_LOCAL} == PAPER_LOCAL
    for a in ais:
        assert {k: a[k] for k in PAPER_AIS} == PAPER_AIS


def test_paper_preset_differs_from_it_only_in_starts_and_tuning():
    """Same data, models, experiments and budgets; paper.yaml starts q* and AIS at the encoder's q,
    fits q* with this package's optimisers (`method: auto`) and freezes pilot-tuned step sizes, as
    the README's preset table says."""
    protocol, paper = _load("paper_protocol.yaml"), _load("paper.yaml")
    for section in ("local", "ais"):
        protocol["evaluation"].pop(section)
    assert protocol == paper
    p_locals, p_ais = _local_and_ais_sections(_estimators("paper.yaml"))
    q_locals, q_ais = _local_and_ais_sections(_estimators("paper_protocol.yaml"))
    for p, q in zip(p_locals, q_locals, strict=True):
        assert p["init"] == "encoder" and p["method"] != "adam" and {**p, "init": "prior", "method": "adam"} == q
    for p, q in zip(p_ais, q_ais, strict=True):
        assert (p["init"], p["tuning"]) == ("encoder", "pilot") and {**p, "init": "prior", "tuning": "online"} == q

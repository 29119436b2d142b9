"""The experiment registry (src/vaegaps/pipeline/experiments.yaml) is the one declaration of each
experiment: the schema's `experiments:` section, the resolved settings, the preflight's evaluation
sets and variant checks, the rules files the Snakefile includes, the captions and the claims'
inputs all come from it. (Its outputs against a real dry run: tests/workflow/test_experiment_outputs.py.)"""

import re

import pytest
import yaml
from workflow_runner import REPO, TINY

from vaegaps import claims, config
from vaegaps.errors import VaegapsError
from vaegaps.pipeline import experiments, study
from vaegaps.pipeline.preflight import evaluation_sets

REGISTRY = experiments.EXPERIMENTS


def _tiny() -> dict:
    return config.validate(yaml.safe_load(TINY.read_text()), config.SCHEMA)


def test_schema_experiments_section_is_the_registrys():
    """The schema file declares no experiment section itself; the loaded schema has exactly the
    registry's, each its declaration's."""
    raw = yaml.safe_load(config.SCHEMA.read_text())["properties"]["experiments"]
    assert raw["properties"] == {} and raw["additionalProperties"] is False
    loaded = config.load_schema()["properties"]["experiments"]["properties"]
    assert list(loaded) == [n for n, e in REGISTRY.items() if e.schema is not None]
    assert all(loaded[n] == REGISTRY[n].schema for n in loaded)
    # the refinement curve and the claims have no section of their own: a study cannot name them
    with pytest.raises(VaegapsError, match="experiments"):
        config.validate({"datasets": ["digits"], "experiments": {"claims": {}}}, config.SCHEMA)


def test_the_studies_name_only_declared_experiments():
    for path in [REPO / "config.yaml", TINY, *sorted((REPO / "workflow" / "presets").glob("*.yaml"))]:
        cfg = yaml.safe_load(path.read_text())
        assert set(cfg.get("experiments", {})) <= set(REGISTRY), path


def test_every_declaration_has_its_rules_and_captions():
    """Each declaration's rules file exists, marks each of its captions (and only those) through
    caption("NAME"), and writes each of its outputs and each claims input it declares."""
    for e in REGISTRY.values():
        rules = (REPO / "workflow" / "rules" / f"{e.rules}.smk").read_text()
        assert set(re.findall(r'caption\("(\w+)"\)', rules)) == set(e.captions), e.name
        for path in (*e.outputs, *e.claims.values()):
            assert f'{{RES}}/{path}"' in rules, (e.name, path)
        assert e.title and e.outputs, e.name
    # no caption file left beside the declarations'
    left = {p.stem for p in (REPO / "workflow" / "report").glob("*.rst")}
    assert not left & {c for e in REGISTRY.values() for c in e.captions}


def test_the_snakefile_includes_every_declared_rules_file_and_no_other():
    smk = (REPO / "Snakefile").read_text()
    named = set(re.findall(r'include: "workflow/rules/(\w+)\.smk"', smk))
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):   # a rules file's own includes
        named |= set(re.findall(r'include: "(\w+)\.smk"', rules.read_text()))
    assert "workflow/rules/{_experiment.rules}.smk" in smk and "EXPERIMENTS.values()" in smk
    files = {p.stem for p in (REPO / "workflow" / "rules").glob("*.smk")}
    assert files == named | {e.rules for e in REGISTRY.values()}, files ^ (named | {e.rules for e in REGISTRY.values()})
    assert not named & {e.rules for e in REGISTRY.values()}


def test_the_claims_read_what_the_registry_declares():
    assert set(experiments.claims_inputs()) == set(claims.NAMED_INPUTS)
    feeders = {n for n, e in REGISTRY.items() if e.claims or e.claims_gaps}
    assert set(REGISTRY["claims"].requires) == feeders
    cfg = _tiny()
    assert REGISTRY["claims"].configured(cfg)
    del cfg["experiments"]["figure2"]
    assert not REGISTRY["claims"].configured(cfg) and REGISTRY["refinement"].configured(cfg)


def test_resolved_config_and_preflight_cover_every_declared_experiment():
    """tests/data/tiny.yaml configures every experiment: each one's section is resolved, its
    datasets evaluated, its own evaluation sets checked, its variants checked, its stated settings
    stated."""
    cfg = _tiny()
    assert {e.name for e in experiments.configured(cfg)} == set(REGISTRY)
    resolved = study.resolved_config(cfg)
    sets = evaluation_sets(cfg)
    refs = study.variant_refs(cfg)
    stated = study.estimator_settings(resolved)
    for e in REGISTRY.values():
        if e.schema is not None:
            assert e.name in resolved["experiments"], e.name
        for key in e.overrides:   # each override merged into the dataset's settings
            got = resolved["experiments"][e.name][key]
            assert set(cfg["experiments"][e.name].get(key, {})) <= set(got) and "n_samples" in str(got)
        for key in e.per_dataset:
            assert set(resolved["experiments"][e.name][key]) == set(cfg["datasets"])
        assert set(e.dataset_names(cfg)) <= set(resolved["evaluation"]), e.name
        assert set(e.evaluation_sets(cfg)) <= set(sets), e.name
        assert set(e.variant_refs(cfg)) <= set(refs), e.name
        assert all(stated[label] is not None for label in e.stated), e.name
    ot = resolved["experiments"]["over_training"]["evaluation"]
    assert ot["ais"]["n_chains"] == 2 and set(ot["local"]) >= {"ffg", "flow"}  # per family, as every evaluation
    assert ("digits", "valid", 4, "experiments.over_training.n_points") in sets
    assert ("experiments.flows_amortization.encoders.flow_small", "frozen_small") in refs
    assert ("experiments.variant_tables.variants.0", "large_encoder") in refs


def test_models_of_the_declarations():
    cfg = _tiny()
    vt = REGISTRY["variant_tables"].model_keys(cfg)
    assert vt == [("digits", v, "ffg") for v in ("standard", "large_encoder", "no_annealing")]
    assert REGISTRY["decoder_capacity"].named_models(cfg) == {
        0: ("digits", "decoder_0", "ffg"), 2: ("digits", "standard", "ffg"), 4: ("digits", "decoder_4", "ffg")}
    assert REGISTRY["figure2"].model_keys(cfg) == [] and REGISTRY["bdmc"].model_keys(cfg) == []
    del cfg["experiments"]["decoder_capacity"]
    assert REGISTRY["decoder_capacity"].model_keys(cfg) == []


def test_a_bad_declaration_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "experiments.yaml"
    bad.write_text("x: {title: t, output: [a.csv]}\n")
    with pytest.raises(VaegapsError, match=r"experiment 'x': unknown field\(s\) output"):
        experiments.load(bad)
    bad.write_text("x: {title: t, requires: [nope]}\n")
    with pytest.raises(VaegapsError, match="experiment 'x': requires"):
        experiments.load(bad)
    bad.write_text("x: {title: t, certify: always}\n")
    with pytest.raises(VaegapsError, match="experiment 'x': certify 'always': one of final, last_snapshot"):
        experiments.load(bad)
    bad.write_text("x: {title: t, models: {refs: models}}\n")
    with pytest.raises(VaegapsError, match="experiment 'x': models is"):
        experiments.load(bad)
    with pytest.raises(VaegapsError, match="no experiment declares the caption 'nope'"):
        experiments.caption("nope")

"""The experiment registry: one declaration per experiment in experiments.yaml beside this module
(package data), read here. Every place that used to name experiments one by one iterates it
instead: the Snakefile includes each one's rules, workflow/rules/common.smk builds what `all` asks
for and the models each reads, vaegaps.config puts each one's section into the schema (reading the
YAML as data: the library imports nothing of this layer), vaegaps.pipeline.study builds each one's
settings, checks and record in results/config.resolved.yaml, and the preflight checks each one's
evaluation sets. No torch and nothing of the package but its errors (the Snakefile reads
it at parse time). No stage imports it: editing a declaration (a caption) reruns no job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import VaegapsError

REGISTRY = Path(__file__).with_name("experiments.yaml")
# `requires: claims feeders`: every experiment whose outputs the claims read
CLAIMS_FEEDERS = "claims feeders"
# `certify`: BDMC certifies the models' final weights, or each one's last saved snapshot
CERTIFY = (None, "final", "last_snapshot")
_FIELDS = ("title", "rules", "schema", "requires", "datasets", "sets", "overrides", "per_dataset", "models",
           "certify", "claims_gaps", "claims", "stated", "outputs", "captions")


@dataclass(frozen=True)
class Experiment:
    """One declaration of experiments.yaml (its header says what each field means)."""

    name: str
    title: str
    rules: str
    schema: dict | None = None
    requires: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    sets: tuple[dict, ...] = ()
    overrides: dict = field(default_factory=dict)
    per_dataset: dict = field(default_factory=dict)
    models: dict | None = None
    certify: str | None = None
    claims_gaps: bool = False
    claims: dict = field(default_factory=dict)
    stated: dict = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    captions: dict = field(default_factory=dict)

    def configured(self, config: dict) -> bool:
        """Whether a study builds it: its section is in `experiments:` (the schema fills a section
        with a default), or, without a section of its own, every experiment it requires is."""
        if self.schema is not None:
            return self.name in config.get("experiments", {})
        return all(EXPERIMENTS[r].configured(config) for r in self.requires)

    def section(self, config: dict) -> dict:
        """Its section of the study as written (after the schema's defaults); {} when not configured."""
        return config.get("experiments", {}).get(self.name, {}) if self.schema is not None else {}

    def dataset_names(self, config: dict) -> list[str]:
        """The datasets it evaluates at their own evaluation settings (its `datasets` keys)."""
        section, out = self.section(config), []
        for key in self.datasets if section else ():
            value = section.get(key, [])
            out += [value] if isinstance(value, str) else list(value)
        return out

    def evaluation_sets(self, config: dict) -> list[tuple[str, str, int, str]]:
        """(dataset, split, n_points, config key) of each of its own evaluation sets (`sets`)."""
        section, out = self.section(config), []
        for spec in self.sets if section else ():
            splits = spec["splits"] if "splits" in spec else [section[spec["split"]]]
            out += [(section[spec["dataset"]], split, section[spec["n_points"]],
                     f"experiments.{self.name}.{spec['n_points']}") for split in splits]
        return out

    def named_models(self, config: dict) -> dict[str, tuple[str, str, str]]:
        """{name: (dataset, variant, family)} of the models it reads, in the order declared; a
        grid's are named DATASET/VARIANT/FAMILY. {} when not configured or it declares none."""
        spec, sec = self.models, self.section(config)
        if not spec or not sec:
            return {}
        if "grid" in spec:
            grid = spec["grid"]
            keys = [(d, v, f) for d in sec.get(grid["datasets"], [])
                    for v in ["standard", *sec.get(grid["variants"], [])] for f in sec.get(grid["families"], [])]
            return {"/".join(k): k for k in keys}
        return {name: (sec[spec["dataset"]], *_split(ref)) for name, ref in sec.get(spec["refs"], {}).items()}

    def model_keys(self, config: dict) -> list[tuple[str, str, str]]:
        """(dataset, variant, family) of every model it reads (`named_models`), in order."""
        return list(self.named_models(config).values())

    def variant_refs(self, config: dict) -> list[tuple[str, str]]:
        """(config key, variant) of every variant its section names (vaegaps.pipeline.study.check_variants)."""
        spec, sec = self.models, self.section(config)
        if not spec or not sec:
            return []
        where = f"experiments.{self.name}"
        if "grid" in spec:
            key = spec["grid"]["variants"]
            return [(f"{where}.{key}.{i}", v) for i, v in enumerate(sec.get(key, []))]
        key = spec["refs"]
        return [(f"{where}.{key}.{k}", _split(ref)[0]) for k, ref in sec.get(key, {}).items()]


def _split(ref: str) -> tuple[str, str]:
    """"VARIANT/FAMILY" -> (variant, family) (as vaegaps.config.split_ref; the registry imports no settings code)."""
    variant, _, family = ref.partition("/")
    return variant, family


def load(path: str | Path = REGISTRY) -> dict[str, Experiment]:
    """The declarations of `path`, by name, in the order written; a field the registry does not
    know, or a `requires` naming no experiment, is an error naming it."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    feeders = tuple(n for n, spec in raw.items() if (spec.get("claims") or spec.get("claims_gaps")) and "schema" in spec)
    out = {}
    for name, spec in raw.items():
        unknown = sorted(set(spec) - set(_FIELDS))
        if unknown or "title" not in spec:
            raise VaegapsError(f"{path}: experiment {name!r}: "
                               + (f"unknown field(s) {', '.join(unknown)}" if unknown else "no title"))
        requires = spec.get("requires", ())
        requires = feeders if requires == CLAIMS_FEEDERS else requires
        if isinstance(requires, str) or any(r not in raw for r in requires):
            raise VaegapsError(f"{path}: experiment {name!r}: requires {requires!r}: name experiments, "
                               f"or {CLAIMS_FEEDERS!r}")
        if spec.get("certify") not in CERTIFY:
            raise VaegapsError(f"{path}: experiment {name!r}: certify {spec['certify']!r}: one of "
                               f"{', '.join(c for c in CERTIFY if c)}")
        models = spec.get("models")
        if models is not None and not ({"dataset", "refs"} == set(models) or {"grid"} == set(models)):
            raise VaegapsError(f"{path}: experiment {name!r}: models is {{dataset: KEY, refs: KEY}} or "
                               "{grid: {datasets: KEY, variants: KEY, families: KEY}}")
        spec = {**spec, "rules": spec.get("rules", name), "requires": tuple(requires)}
        for key in ("datasets", "sets", "outputs"):
            spec[key] = tuple(spec.get(key, ()))
        out[name] = Experiment(name=name, **spec)
    return out

EXPERIMENTS: dict[str, Experiment] = load()


def configured(config: dict) -> list[Experiment]:
    """The experiments a study builds, in registry order."""
    return [e for e in EXPERIMENTS.values() if e.configured(config)]


def outputs(config: dict) -> list[str]:
    """The files under results/ that `all` builds for the experiments a study configures."""
    return [o for e in configured(config) for o in e.outputs]


def claims_inputs() -> dict[str, str]:
    """The claims' named inputs: {name: file under results/} of every experiment feeding them."""
    return {name: path for e in EXPERIMENTS.values() for name, path in e.claims.items()}


def caption(name: str) -> str:
    """The text of report caption `name`, from the experiment declaring it."""
    for e in EXPERIMENTS.values():
        if name in e.captions:
            return e.captions[name]
    raise VaegapsError(f"no experiment declares the caption {name!r} ({REGISTRY})")

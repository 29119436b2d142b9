# Shared helpers: config validation, output paths, per-model settings, code dependencies.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from vaegaps.config import evaluation_config, model_config, validate  # noqa: E402 (torch-free)

validate(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")

RES = config["results"]
MODEL = f"{RES}/models/{{dataset}}/{{variant}}/{{family}}"
EVAL = f"{RES}/eval/{{dataset}}/{{variant}}/{{family}}"
THREADS = config["threads"]
PKG = Path(workflow.basedir) / "src" / "vaegaps"


wildcard_constraints:
    dataset="digits|mnist|fashion_mnist|cifar10",
    variant="[A-Za-z0-9_]+",
    family="ffg|flow|realnvp",
    qfamily="ffg|flow",


def code(*modules):
    """The package modules a stage runs, as inputs: editing one reruns the stages that use it."""
    base = ("__init__", "errors", "io", "stage", "runtime")
    return [str(PKG / f"{m}.py") for m in (*base, *modules)]


MODEL_CODE = ("vae", "nets", "families", "bounds", "config")
ESTIMATOR_CODE = (*MODEL_CODE, "rng", "likelihood", "data", "evaluate")


def model_cfg(wildcards):
    return model_config(config, wildcards.dataset, wildcards.variant, wildcards.family)


def eval_cfg(wildcards):
    return evaluation_config(config, wildcards.dataset)


def table2_keys():
    return [(d, f) for d in config["datasets"] for f in config["families"]]


ALL_OUTPUTS = [f"{RES}/table2.csv", f"{RES}/table2.md"]

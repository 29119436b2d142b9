# Shared helpers: config validation, output paths, per-model settings, code dependencies.
import sys
from pathlib import Path

# The Snakefile and its jobs import the same code: the package beside this Snakefile (src/), put
# first on the parse-time path here and on every job's PYTHONPATH (vaegaps.pipeline.stage.share_source).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
import copy
import os
from vaegaps.config import (  # torch-free
    FAMILIES,
    SCHEMA,
    evaluation_config,
    model_config,
    model_path,
    settings_key,
    split_ref,
    starts_from_qstar_ffg,
    validate,
    write_resolved,
)
from vaegaps.pipeline.study import (  # a study across its experiments, torch-free
    check_parts,
    check_refinement,
    check_variants,
    experiment_settings,
    resolved_config,
)
from vaegaps.pipeline.preflight import preflight  # torch-free
from vaegaps.datasets import DATASETS  # the dataset registry, torch-free
from vaegaps.pipeline.experiments import EXPERIMENTS, claims_inputs, outputs as experiment_outputs  # torch-free
from vaegaps.pipeline.experiments import caption as caption_text
from vaegaps.errors import VaegapsError
from vaegaps.pipeline.stage import one_line, share_source  # torch-free
from vaegaps.pipeline.codedeps import script_code as code_of  # reads sources, imports nothing

share_source(Path(workflow.basedir) / "src")

# A --configfile is a complete study (a preset): it does not inherit config.yaml's digits-scale
# settings; what it leaves out takes the schema's defaults (src/vaegaps/config.schema.yaml).
if workflow.config_settings.configfiles:
    config.clear()
    config.update(copy.deepcopy(dict(workflow.config_settings.overwrite_config)))
# A bad config is one line `error: …`, not Snakemake's report of an exception with its file and
# traceback lines; those with --verbose or VAEGAPS_TRACEBACK=1 (vaegaps.pipeline.stage.one_line).
VERBOSE = bool(getattr(workflow.output_settings, "verbose", False))
with one_line(VERBOSE):
    validate(config, SCHEMA)  # src/vaegaps/config.schema.yaml, package data
    config.setdefault("datasets", [])  # a study of user models alone names none (workflow/rules/user.smk)
    check_parts(config)
    check_refinement(config)
    check_variants(config)
    RESOLVED = resolved_config(config)

RES = config["results"]

# Before the DAG, in the main process only (cluster jobs parse this file too): an evaluation set
# larger than its split, a live run in this folder (its Snakemake or a job of a killed run), and a
# damaged data file, model or checkpoint each stop the run with one line saying what to do; lock
# files left by a killed run are removed, never a live run's (src/vaegaps/pipeline/preflight.py). A dry run
# only reports.
if workflow.is_main_process:
    with one_line(VERBOSE):
        preflight(
            config,
            RES,
            configfiles=workflow.config_settings.configfiles,
            dryrun=bool(getattr(workflow.output_settings, "dryrun", False)),
        )

MODEL = f"{RES}/models/{{dataset}}/{{variant}}/{{family}}"
THREADS = config["threads"]
# GPUs asked of a cluster by the rules a GPU speeds up (training, local optimisation, AIS, BDMC);
# a site without GPUs sets them to 0 in its own profile (README, "Running on a cluster").
GPU = 0 if config["device"] == "cpu" else 1
PART = "part_{part}_of_{parts}"
MODEL_ID = "{dataset}/{variant}/{family}"  # a model's wildcards, as folders
# the registries' names as wildcard patterns: digits|mnist|…, ffg|flow|realnvp
DATASET_NAMES = "|".join(DATASETS)
FAMILY_NAMES = "|".join(FAMILIES)


def log_path(name, *segments):
    """A job's log, results/logs/NAME/S1/…/Sn.log: NAME is its rule's name (or a folder rules
    share), `segments` the folders and file name its wildcards make, e.g. log_path("ais",
    MODEL_ID, PART); a rule without wildcards logs to results/logs/NAME.log."""
    return f"{RES}/logs/{'/'.join((name, *segments))}.log"


def bench_path(name, *segments):
    """A job's benchmark, named as its log (log_path): results/benchmarks/NAME/S1/…/Sn.tsv."""
    return f"{RES}/benchmarks/{'/'.join((name, *segments))}.tsv"


# `resources: **LOCAL_JOB`: the jobs that take seconds (gathering parts, gaps, tables, figures of a
# summary), each a `localrule` run on the submitting host. `resources: **GPU_DAY_JOB`: the jobs a GPU
# speeds up that may take a day (training, local optimisation, AIS).
LOCAL_JOB = {"mem_mb": 2000, "runtime": 10}
GPU_DAY_JOB = {"mem_mb": 8000, "runtime": 24 * 60, "gpu": GPU}


wildcard_constraints:
    dataset=DATASET_NAMES,
    variant="[A-Za-z0-9_]+",
    family=FAMILY_NAMES,
    epoch="[0-9]+",
    estimator=f"amortized|local_({FAMILY_NAMES})|ais|refinement|bdmc|bdmc_over_training_epoch_[0-9]+",
    source="eval|user",
    model=f"({DATASET_NAMES})/[A-Za-z0-9_]+/({FAMILY_NAMES})|[A-Za-z0-9_]+",
    part="[0-9]+",
    parts="[0-9]+",


def script_code(script):
    """The package modules stage script `script` runs (its imports, transitively, read from the
    source), as inputs: editing one reruns exactly the stages that import it."""
    return code_of(Path(workflow.basedir) / "workflow" / "scripts" / f"{script}.py")


# A model source, the estimator rules' {source}/{model} (evaluate.smk): eval/DATASET/VARIANT/FAMILY,
# a VAE this study trains, or user/NAME, a user's own model (user.smk). Every estimator of either
# writes {source}/{model}/parts/{estimator}/part_P_of_K.parquet, gathered into
# {source}/{model}/{estimator}.parquet by one rule.
SOURCE = "{source}/{model}"


# Every stage split into `evaluation.parts` jobs writes {source}/{model}/parts/{estimator}/
# part_P_of_K.parquet, gathered into one Parquet, {source}/{model}/{estimator}.parquet, by the one
# gather rule, gather_parts (evaluate.smk). {gathered} is {source}/{model}/{estimator}: an estimator
# (amortized, local_FAMILY, ais), the refinement curve or BDMC of a model source, and, of a built-in
# model only, BDMC at an over-training snapshot (bdmc_over_training_epoch_E).
_BUILTIN = f"({DATASET_NAMES})/[A-Za-z0-9_]+/({FAMILY_NAMES})"
_ESTIMATORS = f"amortized|local_({FAMILY_NAMES})|ais|refinement|bdmc"
GATHERED = "|".join(
    [
        f"eval/{_BUILTIN}/({_ESTIMATORS}|bdmc_over_training_epoch_[0-9]+)",
        f"user/[A-Za-z0-9_]+/({_ESTIMATORS})",
    ]
)


def gathered_parts(w):
    """The part files gather_parts joins into {gathered}.parquet, as many as the model's
    `evaluation.parts` (its dataset's, or its user_models entry's)."""
    source, key = w.gathered.split("/", 1)
    model, leaf = key.rsplit("/", 1)
    name = model.split("/")[0]  # the user model's name, or the built-in model's dataset
    parts = USER[name]["evaluation"]["parts"] if source == "user" else eval_parts(name)
    return parts_of(f"{RES}/{source}/{model}/parts/{leaf}", parts)


def eval_parts(dataset):
    return evaluation_config(config, dataset)["parts"]


def gathered_row_keys(w):
    """The columns that name a row of {gathered}: index and steps for a refinement curve (one row
    per datapoint and k), index for the rest."""
    leaf = w.gathered.rsplit("/", 1)[-1]
    return ["index", "steps"] if leaf == "refinement" else ["index"]


def builtin_source(dataset, variant, family):
    """The model source of a VAE of the study (vaegaps.pipeline.stages.stage_estimate's params.source)."""
    return {
        "kind": "eval",
        "dataset": dataset,
        "variant": variant,
        "family": family,
        "evaluation": evaluation_config(config, dataset),
    }


def user_source(name):
    """The model source of user model NAME (user.smk)."""
    return {"kind": "user", "name": name, "settings": USER[name], "evaluation": USER[name]["evaluation"]}


def source_of(w):
    """The model source of the {source}/{model} wildcards."""
    if w.source == "user":
        return user_source(w.model)
    key = w.model.split("/")
    if len(key) != 3:
        raise VaegapsError(f"eval/{w.model}: a built-in model is eval/DATASET/VARIANT/FAMILY")
    return builtin_source(*key)


def source_inputs(w):
    """The files a model source's estimators read: the trained weights and the dataset's Parquet
    (ancient, see train.smk) of a built-in model; a user model's data and declared `inputs`."""
    if w.source == "user":
        return {"data": USER[w.model]["data"], "inputs": USER[w.model]["inputs"]}
    return {"model": f"{RES}/models/{w.model}/model.pt", "data": ancient(f"{RES}/data/{w.model.split('/')[0]}.parquet")}


def source_resume(w):
    """The resumable chunks of one estimator of a model source (results/resume/…, the chunk cache)."""
    return f"{RES}/resume/{'user/' if w.source == 'user' else ''}{w.model}/{w.estimator}"


def ffg_start(w):
    """q*_FFG of the same model and part: the start of a q* family that `evaluation.local` starts
    from it (none for FFG itself, nor from the prior)."""
    if not starts_from_qstar_ffg(source_of(w)["evaluation"]["local"], w.estimator.removeprefix("local_")):
        return []
    return f"{RES}/{w.source}/{w.model}/parts/local_ffg/part_{w.part}_of_{w.parts}.parquet"


def bdmc_inputs(w):
    """The files BDMC of a model source reads: a built-in model's final weights (bdmc) or its
    snapshots (bdmc_over_training_epoch_E); a user model's data and declared `inputs`."""
    if w.source == "user":
        if w.estimator != "bdmc":
            raise VaegapsError(f"user/{w.model}/{w.estimator}: a user model has no snapshots; its BDMC is bdmc")
        return source_inputs(w)
    if w.estimator == "bdmc":
        return {"model": f"{RES}/models/{w.model}/model.pt"}
    return {"snapshots": f"{RES}/models/{w.model}/snapshots"}


def bdmc_run(w, input):
    """What a BDMC job simulates from and at which AIS setting (vaegaps.pipeline.sources.run_bdmc):
    `n_points` and `ais`; of a built-in model also the `weights`, the `setting` (main: its
    dataset's AIS; over_training: the over-training AIS, at a snapshot) and their `epoch`."""
    if w.source == "user":
        return {"n_points": USER[w.model]["bdmc_points"], "ais": USER[w.model]["evaluation"]["ais"]}
    dataset, variant, family = w.model.split("/")
    if w.estimator == "bdmc":
        setting, epoch, weights = "main", trained_epochs(dataset, f"{variant}/{family}"), input.model
    else:
        epoch = int(w.estimator.removeprefix("bdmc_over_training_epoch_"))
        setting, weights = "over_training", f"{input.snapshots}/epoch_{epoch}.pt"
    return {
        "weights": weights,
        "setting": setting,
        "epoch": epoch,
        "ais": ais_setting(dataset, setting),
        "n_points": BD["n_points"],
    }


def gaps_inputs(w):
    """The gathered estimates the gaps of a model source read: L[q], q* of each family and AIS; for
    a built-in model q* of FFG and Flow (its gaps' elbo_local_{ffg,flow}), for a user model q* of
    every family its settings fit."""
    if w.source == "user":
        local = [e for e in user_estimators(USER[w.model]) if e.startswith("local_")]
    else:
        local = ["local_ffg", "local_flow"]
    return {e: f"{RES}/{w.source}/{w.model}/{e}.parquet" for e in ["amortized", *local, "ais"]}


def gaps_model_config(w):
    """The settings of a built-in model (its gaps' metadata records them); none for a user model,
    whose settings its source carries."""
    if w.source == "user":
        return None
    return model_config(config, *w.model.split("/"))


def parts_of(prefix, parts):
    """The files of an evaluation stage split into `parts` jobs: PREFIX/part_P_of_K.parquet."""
    return [f"{prefix}/part_{p}_of_{parts}.parquet" for p in range(parts)]


def model_cfg(wildcards):
    return model_config(config, wildcards.dataset, wildcards.variant, wildcards.family)


TRAINED = f"{RES}/trained/{MODEL_ID}/{{key}}"  # one model's training under settings KEY (train.smk)


def settings_key_of(w):
    return settings_key(config, w.dataset, w.variant, w.family)


def trained(leaf):
    """Input function: file `leaf` of the current settings' training of a model."""
    return lambda w: f"{RES}/trained/{w.dataset}/{w.variant}/{w.family}/{settings_key_of(w)}/{leaf}"


def train_cfg(w):
    """The model's settings; a KEY that is not theirs (an old settings' folder) is not retrained
    under the current settings."""
    if w.key != settings_key_of(w):
        raise VaegapsError(
            f"{RES}/trained/{w.dataset}/{w.variant}/{w.family}/{w.key} holds other settings "
            f"than this config's ({settings_key_of(w)}); ask for results/models/… instead"
        )
    return model_cfg(w)


def base_decoder(wildcards):
    """The trained model whose decoder this one loads (frozen-decoder variants), as an input."""
    path = model_cfg(wildcards)["train"].get("init_decoder")
    return [path] if path else []


def ref_path(dataset, ref, leaf):
    """File `leaf` of model "VARIANT/FAMILY" of dataset: models/…/model.pt, or eval/…/LEAF.parquet, an
    estimator's (amortized, local_FAMILY, ais), its refinement curve, its BDMC or its gaps."""
    variant, family = split_ref(ref)
    if leaf == "model":
        return model_path(config, dataset, ref)
    return f"{RES}/eval/{dataset}/{variant}/{family}/{leaf}.parquet"


def table2_keys():
    return [(d, f) for d in config["datasets"] for f in config["families"]]


# The experiments beyond Table 2, each declared once in src/vaegaps/pipeline/experiments.yaml (its
# config section, the models it reads, its evaluation overrides, outputs, captions and the claims'
# inputs it writes): the Snakefile includes each one's rules, and these helpers read the declarations.


def experiment(name):
    """The settings experiment NAME's rules read: its section with its evaluation overrides applied
    (vaegaps.pipeline.study.experiment_settings); {} in a study without it, whose `all` never asks
    for its rules' outputs."""
    return experiment_settings(config, name)


def experiment_models(name):
    """(dataset, variant, family) of every model experiment NAME reads (its declaration's `models`)."""
    return EXPERIMENTS[name].model_keys(config)


# the over-training and BDMC settings the evaluation rules read (evaluate.smk)
OT = experiment("over_training")
BD = experiment("bdmc")


def caption(name):
    """Report caption NAME of an experiment (its declaration's `captions`) as the file `report()`
    reads: written under .snakemake/vaegaps/captions/ of the working directory (Snakemake's own
    state) when its text is new, so the rules and their captions come from one declaration."""
    path = Path(".snakemake", "vaegaps", "captions", f"{name}.rst").resolve()
    text = caption_text(name)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: a job parsing this file meanwhile reads one whole caption
    return str(path)


def claim_gap_keys():
    """(dataset, variant, family) of every model whose per-datapoint gaps the claims read:
    Table 2's and those of each experiment declared `claims_gaps` (Table 3's), each once."""
    keys = [(d, "standard", f) for d, f in table2_keys()]
    keys += [k for e in EXPERIMENTS.values() if e.claims_gaps for k in e.model_keys(config)]
    return list(dict.fromkeys(keys))


def refinement_keys():
    """(dataset, variant, family) of every model with a refinement curve (workflow/rules/refinement.smk):
    Table 2's and Table 3's, each once."""
    return claim_gap_keys()


def snapshot_epochs(dataset, variant, family):
    """The epochs whose weights a model keeps (train.snapshots, those it reaches)."""
    train = model_config(config, dataset, variant, family)["train"]
    return [e for e in train["snapshots"] if e <= train["epochs"]]


def snapshot_keys(name):
    """(model name, VARIANT/FAMILY, epoch) for every saved snapshot of experiment NAME's models
    (the over-training models)."""
    models = EXPERIMENTS[name].named_models(config)
    return [(m, f"{v}/{f}", e) for m, (d, v, f) in models.items() for e in snapshot_epochs(d, v, f)]


def ais_setting(dataset, setting):
    """The AIS settings called `setting`: 'main' (Table 2), or the name of an experiment with its
    own evaluation settings ('over_training')."""
    if setting == "main":
        return evaluation_config(config, dataset)["ais"]
    return experiment(setting)["evaluation"]["ais"]


def trained_epochs(dataset, ref):
    """The epochs model "VARIANT/FAMILY" of dataset is trained for (its final weights' epoch)."""
    return model_config(config, dataset, *split_ref(ref))["train"]["epochs"]


def bdmc_keys():
    """(dataset, variant, family, setting, epoch): BDMC of every model whose log p̂ a table or a
    claim uses, at the AIS setting that produced it, each once. 'main': the Table 2 models and
    those of each experiment declared `certify: final` (Table 3's, the decoder-capacity models), at
    their final weights (epoch = trained epochs); an experiment declared `certify: last_snapshot`
    (setting: its name, 'over_training'): each of its models at its last saved snapshot (the one
    the claims compare), those weights, not the final ones."""
    main = [(d, "standard", f) for d, f in table2_keys()]
    main += [k for e in EXPERIMENTS.values() if e.certify == "final" for k in e.model_keys(config)]
    keys = [(d, v, f, "main", trained_epochs(d, f"{v}/{f}")) for d, v, f in dict.fromkeys(main)]
    for e in EXPERIMENTS.values():
        if e.certify == "last_snapshot":
            for d, v, f in dict.fromkeys(e.model_keys(config)):
                epochs = snapshot_epochs(d, v, f)
                keys += [(d, v, f, e.name, max(epochs))] if epochs else []
    return keys


def bdmc_file(dataset, variant, family, setting, epoch):
    """The gathered BDMC Parquet of one key of bdmc_keys: eval/…/bdmc.parquet for a final model,
    eval/…/bdmc_over_training_epoch_E.parquet for an over-training snapshot."""
    return f"{RES}/eval/{dataset}/{variant}/{family}/{bdmc_run_name(setting, epoch)}.parquet"


def bdmc_run_name(setting, epoch):
    """The estimator name of a BDMC run of a built-in model: bdmc (its final weights, its dataset's
    AIS) or bdmc_over_training_epoch_E (an over-training snapshot, the over-training AIS)."""
    return "bdmc" if setting == "main" else f"bdmc_over_training_epoch_{epoch}"


# Table 2, and the outputs of every experiment the study configures (their declarations' `outputs`)
ALL_OUTPUTS = [f"{RES}/table2.csv", f"{RES}/table2.md", *(f"{RES}/{o}" for o in experiment_outputs(config))]

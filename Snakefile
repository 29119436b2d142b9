# vaegaps: Cremer, Li & Duvenaud (2018), "Inference Suboptimality in Variational Autoencoders".
# data -> trained VAEs -> per-datapoint estimates (L[q], L[q*], AIS) -> gaps -> tables.
# The rules live in workflow/rules/; all maths is in src/vaegaps/. No torch at parse time.
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


# common.smk first: every later file uses its settings and helpers.
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# One rules file per experiment beyond Table 2 (docs/method.md §6, §7, §12), each declared once in
# src/vaegaps/pipeline/experiments.yaml (EXPERIMENTS, read in common.smk). Every model they read is
# trained and evaluated by the rules above (train_vae, amortized_bounds, local_optimum, ais, gaps)
# through its variant wildcard.
for _experiment in EXPERIMENTS.values():

    include: f"workflow/rules/{_experiment.rules}.smk"


include: "workflow/rules/user.smk"


report: "workflow/report/workflow.rst"


onstart:
    # a read-only or full results folder stops the run here, with one line: the resolved settings
    # are written first beside the outputs, and take their place only on success (below)
    with one_line(VERBOSE):
        write_resolved(RESOLVED, f"{RES}/.config.resolved.pending.yaml")


onsuccess:
    # every setting of the outputs this run made, resolved in one place (docs/method.md §9):
    # written once they exist, so a failed or killed run never leaves it naming its settings
    if os.path.exists(f"{RES}/.config.resolved.pending.yaml"):  # not after a dry run
        os.replace(f"{RES}/.config.resolved.pending.yaml", f"{RES}/config.resolved.yaml")


# On a cluster the rules marked `localrule: True` run on the submitting host, not as jobs: each
# takes seconds (gathering parts, gaps, tables, plots), and prepare_dataset may need the network
# that compute nodes often lack.
rule all:
    localrule: True
    input:
        ALL_OUTPUTS,
    default_target: True

# vaegaps: Cremer, Li & Duvenaud (2018), "Inference Suboptimality in Variational Autoencoders".
# data -> trained VAEs -> per-datapoint estimates (L[q], L[q*], AIS) -> gaps -> tables.
# The rules live in workflow/rules/; all maths is in src/vaegaps/. No torch at parse time.
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/user.smk"


report: "workflow/report/workflow.rst"


onstart:
    # every setting this run uses, resolved in one place (docs/method.md §9)
    write_resolved(RESOLVED, f"{RES}/config.resolved.yaml")


# On a cluster these run on the submitting host, not as jobs: each takes seconds (gathering parts,
# tables, plots), and prepare_dataset may need the network that compute nodes often lack.
localrules:
    all,
    prepare_dataset,
    gather_parts,
    gather_bdmc,
    gaps,
    table2,
    table3,
    flows_amortization,
    decoder_capacity,
    gaps_over_training,
    figure_gaps_over_training,
    bdmc_table,
    claims,


rule all:
    input:
        ALL_OUTPUTS,
    default_target: True

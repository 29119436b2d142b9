# Your own VAEs (config `user_models`, docs/method.md §11): each named model is one more model
# source, user/NAME, of the estimator rules, their gather rule and the gaps rule (evaluate.smk: L[q],
# q* per family, AIS, the refinement curve, BDMC on data simulated from it, its per-datapoint gaps;
# `evaluation.parts` jobs each, resumable chunks). Here: results/user_table.csv (with the BDMC gap
# that certifies each model's AIS setting), results/user_refinement.csv and a figure per model.
# Settings resolved by vaegaps.user_config (torch-free).
include: "user_common.smk"


rule user_refinement_table:
    """Per user model and k: the mean ELBO after k refinement steps and the fraction of its
    amortization gap closed, with L[q] and L[q*] from its gaps."""
    localrule: True
    input:
        curves=[f"{RES}/user/{n}/refinement.parquet" for n in USER],
        gaps=[f"{RES}/user/{n}/gaps.parquet" for n in USER],
        code=script_code("user_refinement_table"),
    output:
        csv=report(f"{RES}/user_refinement.csv", caption="../report/user_refinement.rst", category="Tables"),
    params:
        names=list(USER),
    log:
        log_path("user_refinement_table"),
    benchmark:
        bench_path("user_refinement_table")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/user_refinement_table.py"


rule user_table:
    """One row per user model: every bound and gap (mean, standard error), trust figures, the BDMC
    gap of its AIS setting, and why an amortization gap is absent."""
    localrule: True
    input:
        gaps=[f"{RES}/user/{n}/gaps.parquet" for n in USER],
        bdmc=[f"{RES}/user/{n}/bdmc.parquet" for n in USER],
        code=script_code("user_table"),
    output:
        csv=report(f"{RES}/user_table.csv", caption="../report/user_table.rst", category="Tables"),
    params:
        names=list(USER),
    log:
        log_path("user_table"),
    benchmark:
        bench_path("user_table")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/user_table.py"


rule user_figure:
    """Per-datapoint gaps of a user model, datapoints sorted by inference gap."""
    localrule: True
    input:
        gaps=f"{UDIR}/gaps.parquet",
        code=script_code("user_figure"),
    output:
        png=report(f"{UDIR}/gaps.png", caption="../report/user_figure.rst", category="Figures"),
        pdf=f"{UDIR}/gaps.pdf",
    log:
        log_path("user", "{name}", "figure"),
    benchmark:
        bench_path("user", "{name}", "figure")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/user_figure.py"

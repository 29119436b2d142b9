# Your own VAEs (config `user_models`, docs/method.md §11): each named model is one more model
# source, user/NAME, of the estimator rules and their gather rule (evaluate.smk: L[q], q* per
# family, AIS; `evaluation.parts` jobs each, resumable chunks; its refinement curve here, in the
# same form). BDMC certifies its AIS setting on data simulated from it, and its per-datapoint gaps
# (vaegaps.tables.gap_table, as every model's), results/user_table.csv and a figure come out.
# Settings resolved by vaegaps.user_config (torch-free).
include: "user_common.smk"


rule user_refinement:
    """The refinement curve of a user model on one part of its data: each datapoint's copy of its
    encoder's q after k gradient steps in the family of its q* (docs/method.md §12; no rows where
    the encoder's q cannot be copied into a family). The estimator rules' form (evaluate.smk),
    for user models only: a built-in model's curve has its own folder (refinement.smk)."""
    input:
        unpack(source_inputs),
        code=script_code("estimate"),
    output:
        f"{RES}/{SOURCE}/parts/{{estimator}}/{PART}.parquet",
    wildcard_constraints:
        source="user",
        estimator="refinement",
    params:
        source=source_of,
        estimator=lambda w: w.estimator,
        resume=source_resume,
    log:
        log_path("{source}", "{model}", "{estimator}", PART),
    benchmark:
        bench_path("{source}", "{model}", "{estimator}", PART)
    threads: THREADS
    resources:
        **GPU_DAY_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/estimate.py"


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


rule user_bdmc:
    """Forward and reverse AIS (the model's AIS setting) on one part of the data simulated from a
    user model: z from its prior, x = decode(z).sample()."""
    input:
        data=user_data,
        inputs=user_inputs,
        code=script_code("user_bdmc"),
    output:
        f"{UDIR}/parts/bdmc/{PART}.parquet",
    params:
        settings=user_settings,
    log:
        log_path("user", "{name}", "bdmc", PART),
    benchmark:
        bench_path("user", "{name}", "bdmc", PART)
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=24 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/user_bdmc.py"


rule user_gaps:
    """Per-datapoint log p̂, bounds and gaps of a user model, from the parts of its estimates (no
    amortization gap where its encoder's family is unknown)."""
    localrule: True
    input:
        amortized=lambda w: user_parts(w, "amortized"),
        local=lambda w: [p for e in user_estimators(USER[w.name]) if e.startswith("local_") for p in user_parts(w, e)],
        ais=lambda w: user_parts(w, "ais"),
        code=script_code("user_gaps"),
    output:
        f"{UDIR}/gaps.parquet",
    params:
        settings=user_settings,
    log:
        log_path("user", "{name}", "gaps"),
    benchmark:
        bench_path("user", "{name}", "gaps")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/user_gaps.py"


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

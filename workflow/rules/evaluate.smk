# Per-datapoint estimates on the evaluation set of every model source (common.smk's SOURCE): a
# VAE of the study (eval/DATASET/VARIANT/FAMILY) and a user's model (user/NAME, user.smk) run the
# same estimator rules, script and driver (vaegaps.pipeline.sources): L[q], q* per family, AIS, the
# refinement curve, and BDMC on data simulated from the model. Each runs as `evaluation.parts` jobs,
# one per consecutive part of the datapoints (one cluster job each), each resuming from its finished
# chunks; gather_parts, the one gather rule of every split stage, joins them into the estimator's
# Parquet (identical for any number of parts), and `gaps` turns a source's estimates into its
# per-datapoint gaps. A job's log and benchmark mirror its output:
# results/logs/{source}/{model}/{estimator}/part_P_of_K.log.
# over_training_point estimates at one snapshot of an over-training model.
# The data file is ancient() here and in every rule that reads it (see train.smk).


rule amortized_bounds:
    """L[q] and IWAE of the encoder's q(z|x), on one part of a model's evaluation set."""
    input:
        unpack(source_inputs),
        code=script_code("estimate"),
    output:
        f"{RES}/{SOURCE}/parts/{{estimator}}/{PART}.parquet",
    wildcard_constraints:
        estimator="amortized",
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
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/estimate.py"


rule local_optimum:
    """L[q*] and IWAE of q* of one family (local_FAMILY) per datapoint, in the model's own family
    widths, with that family's resolved settings, on one part of its evaluation set (a flow starts
    from q*_FFG of the same part where `evaluation.local` says so)."""
    input:
        unpack(source_inputs),
        ffg=ffg_start,
        code=script_code("estimate"),
    output:
        f"{RES}/{SOURCE}/parts/{{estimator}}/{PART}.parquet",
    wildcard_constraints:
        estimator=f"local_({FAMILY_NAMES})",
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


rule ais:
    """AIS estimate of log p(x) (pilot-tuned, frozen step sizes by default), on one part of a
    model's evaluation set."""
    input:
        unpack(source_inputs),
        code=script_code("estimate"),
    output:
        f"{RES}/{SOURCE}/parts/{{estimator}}/{PART}.parquet",
    wildcard_constraints:
        estimator="ais",
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


rule refinement:
    """The refinement curve of a model on one part of its evaluation set: each datapoint's copy of
    its encoder's q after k gradient steps in the family of its q* (docs/method.md §12; no rows for
    a user model whose encoder's q cannot be copied into a family)."""
    input:
        unpack(source_inputs),
        code=script_code("estimate"),
    output:
        f"{RES}/{SOURCE}/parts/{{estimator}}/{PART}.parquet",
    wildcard_constraints:
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


rule bdmc:
    """Forward and reverse AIS on one part of the data simulated from a model (z from its prior, x
    from its decoder): a built-in model's final weights at its dataset's AIS setting (bdmc) or an
    over-training snapshot (the weights the over-training points at that epoch estimate with) at
    the over-training AIS setting (bdmc_over_training_epoch_E); a user model at its AIS setting."""
    input:
        unpack(bdmc_inputs),
        code=script_code("bdmc"),
    output:
        f"{RES}/{SOURCE}/parts/{{estimator}}/{PART}.parquet",
    wildcard_constraints:
        estimator="bdmc|bdmc_over_training_epoch_[0-9]+",
    params:
        source=source_of,
        run=bdmc_run,
    log:
        log_path("{source}", "{model}", "{estimator}", PART),
    benchmark:
        bench_path("{source}", "{model}", "{estimator}", PART)
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=24 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/bdmc.py"


rule gather_parts:
    """The parts of one split stage joined in datapoint order into its per-datapoint Parquet, after
    checking that every part was made with the same settings: an estimator of any model source, its
    refinement curve (one row per datapoint and k) or a BDMC run (common.smk's GATHERED)."""
    localrule: True
    input:
        parts=gathered_parts,
        code=script_code("gather_parts"),
    output:
        f"{RES}/{{gathered}}.parquet",
    wildcard_constraints:
        gathered=GATHERED,
    params:
        row_keys=gathered_row_keys,
    log:
        log_path("gather_parts", "{gathered}"),
    benchmark:
        bench_path("gather_parts", "{gathered}")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/gather_parts.py"


rule gaps:
    """Per-datapoint log p̂ = max(AIS, trusted IWAEs), the bounds and the three gaps of a model source
    (vaegaps.tables.gap_table), q* of the family it was trained with or its encoder's q belongs to
    (a user model's without one has no amortization gap)."""
    localrule: True
    input:
        unpack(gaps_inputs),
        code=script_code("gaps"),
    output:
        f"{RES}/{SOURCE}/gaps.parquet",
    params:
        source=source_of,
        model_config=gaps_model_config,
    log:
        log_path("{source}", "{model}", "gaps"),
    benchmark:
        bench_path("{source}", "{model}", "gaps")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/gaps.py"


rule over_training_point:
    """One model snapshot: log p̂, L[q*], L[q] on n training and n validation points."""
    input:
        snapshots=f"{MODEL}/snapshots",
        data=ancient(f"{RES}/data/{{dataset}}.parquet"),
        code=script_code("over_training_point"),
    output:
        f"{RES}/over_training/{MODEL_ID}/epoch_{{epoch}}.parquet",
    params:
        settings=OT.get("evaluation", {}),
        n_points=OT.get("n_points"),
        seed=config["seed"],
    log:
        log_path("over_training", MODEL_ID, "epoch_{epoch}"),
    benchmark:
        bench_path("over_training", MODEL_ID, "epoch_{epoch}")
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=6 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/over_training_point.py"

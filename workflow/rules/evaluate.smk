# Per-datapoint estimates on the evaluation set of every model source (common.smk's SOURCE): a
# VAE of the study (eval/DATASET/VARIANT/FAMILY) and a user's model (user/NAME, user.smk) run the
# same estimator rules, script and driver (vaegaps.pipeline.sources). Each estimator runs as
# `evaluation.parts` jobs, one per consecutive part of the datapoints (one cluster job each), each
# resuming from its finished chunks; gather_parts, the one gather rule of every split stage, joins
# them into the estimator's Parquet (identical for any number of parts). A job's log and benchmark mirror its output:
# results/logs/{source}/{model}/{estimator}/part_P_of_K.log.
# BDMC certifies an AIS setting on data simulated from a model's final weights (bdmc) or from an
# over-training snapshot (bdmc_snapshot), in the same parts (gather_parts), and
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


rule gather_parts:
    """The parts of one split stage joined in datapoint order into its per-datapoint Parquet, after
    checking that every part was made with the same settings: an estimator of any model source, a
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


rule bdmc:
    """Forward and reverse AIS on data simulated from a model's final weights, at its dataset's
    AIS setting (main)."""
    input:
        model=f"{MODEL}/model.pt",
        code=script_code("bdmc"),
    output:
        f"{RES}/bdmc/{MODEL_ID}/main/{PART}.parquet",
    params:
        weights=lambda w, input: input.model,
        setting="main",
        epoch=lambda w: trained_epochs(w.dataset, f"{w.variant}/{w.family}"),
        ais=lambda w: ais_setting(w.dataset, "main"),
        n_points=BD["n_points"],
        seed=config["seed"],
    log:
        log_path("bdmc", MODEL_ID, "main", PART),
    benchmark:
        bench_path("bdmc", MODEL_ID, "main", PART)
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=24 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/bdmc.py"


rule bdmc_snapshot:
    """Forward and reverse AIS on data simulated from an over-training snapshot (the weights the
    over-training points at that epoch estimate with), at the over-training AIS setting."""
    input:
        snapshots=f"{MODEL}/snapshots",
        code=script_code("bdmc"),
    output:
        f"{RES}/bdmc/{MODEL_ID}/over_training_epoch_{{epoch}}/{PART}.parquet",
    params:
        weights=lambda w, input: f"{input.snapshots}/epoch_{w.epoch}.pt",
        setting="over_training",
        epoch=lambda w: int(w.epoch),
        ais=lambda w: ais_setting(w.dataset, "over_training"),
        n_points=BD["n_points"],
        seed=config["seed"],
    log:
        log_path("bdmc", MODEL_ID, "over_training_epoch_{epoch}", PART),
    benchmark:
        bench_path("bdmc", MODEL_ID, "over_training_epoch_{epoch}", PART)
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=24 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/bdmc.py"


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

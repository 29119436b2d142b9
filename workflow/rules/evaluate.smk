# Per-datapoint estimates on the evaluation set. Each stage runs as `evaluation.parts` jobs, one
# per consecutive part of the datapoints (one cluster job each), each resuming from its finished
# chunks; gather_parts joins them into the stage's Parquet (identical for any number of parts).
# The data file is ancient() here and in every rule that reads it (see train.smk).


rule amortized_bounds:
    """L[q] and IWAE of the encoder's q(z|x)."""
    input:
        model=f"{MODEL}/model.pt",
        data=ancient(f"{RES}/data/{{dataset}}.parquet"),
        code=script_code("amortized_bounds"),
    output:
        f"{EVAL}/parts/amortized/{PART}.parquet",
    params:
        evaluation=eval_cfg,
        resume=f"{RES}/resume/{{dataset}}/{{variant}}/{{family}}/amortized",
    log:
        f"{RES}/logs/amortized_bounds/{{dataset}}/{{variant}}/{{family}}/{PART}.log",
    benchmark:
        f"{RES}/benchmarks/amortized_bounds/{{dataset}}/{{variant}}/{{family}}/{PART}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/amortized_bounds.py"


rule local_optimum:
    """L[q*] and IWAE of q* for one family (qfamily), optimised per datapoint in the model's own
    family widths, with that family's resolved settings."""
    input:
        model=f"{MODEL}/model.pt",
        data=ancient(f"{RES}/data/{{dataset}}.parquet"),
        ffg=ffg_start,
        code=script_code("local_optimum"),
    output:
        f"{EVAL}/parts/local_{{qfamily}}/{PART}.parquet",
    params:
        evaluation=eval_cfg,
        local=local_cfg,
        resume=f"{RES}/resume/{{dataset}}/{{variant}}/{{family}}/local_{{qfamily}}",
    log:
        f"{RES}/logs/local_optimum/{{dataset}}/{{variant}}/{{family}}_{{qfamily}}/{PART}.log",
    benchmark:
        f"{RES}/benchmarks/local_optimum/{{dataset}}/{{variant}}/{{family}}_{{qfamily}}/{PART}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/local_optimum.py"


rule ais:
    """AIS estimate of log p(x) from the prior (pilot-tuned, frozen step sizes by default)."""
    input:
        model=f"{MODEL}/model.pt",
        data=ancient(f"{RES}/data/{{dataset}}.parquet"),
        code=script_code("ais"),
    output:
        f"{EVAL}/parts/ais/{PART}.parquet",
    params:
        evaluation=eval_cfg,
        resume=f"{RES}/resume/{{dataset}}/{{variant}}/{{family}}/ais",
    log:
        f"{RES}/logs/ais/{{dataset}}/{{variant}}/{{family}}/{PART}.log",
    benchmark:
        f"{RES}/benchmarks/ais/{{dataset}}/{{variant}}/{{family}}/{PART}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/ais.py"


rule gather_parts:
    """One evaluation stage's parts, joined in datapoint order into its per-datapoint Parquet."""
    input:
        parts=lambda w: parts_of(f"{RES}/eval/{w.dataset}/{w.variant}/{w.family}/parts/{w.estimator}",
                                 eval_cfg(w)["parts"]),
        code=script_code("gather_parts"),
    output:
        f"{EVAL}/{{estimator}}.parquet",
    log:
        f"{RES}/logs/gather_parts/{{dataset}}/{{variant}}/{{family}}/{{estimator}}.log",
    benchmark:
        f"{RES}/benchmarks/gather_parts/{{dataset}}/{{variant}}/{{family}}/{{estimator}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/gather_parts.py"

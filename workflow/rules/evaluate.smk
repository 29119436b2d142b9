# Per-datapoint estimates on the evaluation set; each resumes from its finished chunks.


rule amortized_bounds:
    """L[q] and IWAE of the encoder's q(z|x)."""
    input:
        model=f"{MODEL}/model.pt",
        data=f"{RES}/data/{{dataset}}.parquet",
        code=code(*ESTIMATOR_CODE),
    output:
        f"{EVAL}/amortized.parquet",
    params:
        evaluation=eval_cfg,
        resume=f"{RES}/resume/{{dataset}}/{{variant}}/{{family}}/amortized",
    log:
        f"{RES}/logs/amortized_bounds/{{dataset}}/{{variant}}/{{family}}.log",
    benchmark:
        f"{RES}/benchmarks/amortized_bounds/{{dataset}}/{{variant}}/{{family}}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/amortized_bounds.py"


rule local_optimum:
    """L[q*] and IWAE of q* for one family (qfamily), optimised per datapoint."""
    input:
        model=f"{MODEL}/model.pt",
        data=f"{RES}/data/{{dataset}}.parquet",
        code=code("local_opt", *ESTIMATOR_CODE),
    output:
        f"{EVAL}/local_{{qfamily}}.parquet",
    params:
        evaluation=eval_cfg,
        resume=f"{RES}/resume/{{dataset}}/{{variant}}/{{family}}/local_{{qfamily}}",
    log:
        f"{RES}/logs/local_optimum/{{dataset}}/{{variant}}/{{family}}_{{qfamily}}.log",
    benchmark:
        f"{RES}/benchmarks/local_optimum/{{dataset}}/{{variant}}/{{family}}_{{qfamily}}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/local_optimum.py"


rule ais:
    """AIS estimate of log p(x) from the prior (pilot-tuned, frozen step sizes by default)."""
    input:
        model=f"{MODEL}/model.pt",
        data=f"{RES}/data/{{dataset}}.parquet",
        code=code("ais", *ESTIMATOR_CODE),
    output:
        f"{EVAL}/ais.parquet",
    params:
        evaluation=eval_cfg,
        resume=f"{RES}/resume/{{dataset}}/{{variant}}/{{family}}/ais",
    log:
        f"{RES}/logs/ais/{{dataset}}/{{variant}}/{{family}}.log",
    benchmark:
        f"{RES}/benchmarks/ais/{{dataset}}/{{variant}}/{{family}}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/ais.py"

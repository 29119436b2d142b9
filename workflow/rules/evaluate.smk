# Per-datapoint estimates on the evaluation set; each resumes from its finished chunks.


rule amortized_bounds:
    """L[q] and IWAE of the encoder's q(z|x)."""
    input:
        model=MODEL + "/model.pt",
        data=RES + "/data/{dataset}.parquet",
        code=code(*ESTIMATOR_CODE),
    output:
        EVAL + "/amortized.parquet",
    params:
        evaluation=config["evaluation"],
        resume=RES + "/resume/{dataset}/{variant}/{family}/amortized",
    log:
        RES + "/logs/amortized_bounds/{dataset}/{variant}/{family}.log",
    benchmark:
        RES + "/benchmarks/amortized_bounds/{dataset}/{variant}/{family}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../scripts/amortized_bounds.py"


rule local_optimum:
    """L[q*] and IWAE of q* for one family (qfamily), optimised per datapoint."""
    input:
        model=MODEL + "/model.pt",
        data=RES + "/data/{dataset}.parquet",
        code=code("local_opt", *ESTIMATOR_CODE),
    output:
        EVAL + "/local_{qfamily}.parquet",
    params:
        evaluation=config["evaluation"],
        resume=RES + "/resume/{dataset}/{variant}/{family}/local_{qfamily}",
    log:
        RES + "/logs/local_optimum/{dataset}/{variant}/{family}_{qfamily}.log",
    benchmark:
        RES + "/benchmarks/local_optimum/{dataset}/{variant}/{family}_{qfamily}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    script:
        "../scripts/local_optimum.py"


rule ais:
    """AIS estimate of log p(x) from the prior (pilot-tuned, frozen step sizes by default)."""
    input:
        model=MODEL + "/model.pt",
        data=RES + "/data/{dataset}.parquet",
        code=code("ais", *ESTIMATOR_CODE),
    output:
        EVAL + "/ais.parquet",
    params:
        evaluation=config["evaluation"],
        resume=RES + "/resume/{dataset}/{variant}/{family}/ais",
    log:
        RES + "/logs/ais/{dataset}/{variant}/{family}.log",
    benchmark:
        RES + "/benchmarks/ais/{dataset}/{variant}/{family}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    script:
        "../scripts/ais.py"

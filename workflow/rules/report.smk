rule gaps:
    """Per-datapoint log p̂ = max(AIS, IWAE of q*), the bounds and the three gaps of one model."""
    input:
        amortized=EVAL + "/amortized.parquet",
        local_ffg=EVAL + "/local_ffg.parquet",
        local_flow=EVAL + "/local_flow.parquet",
        ais=EVAL + "/ais.parquet",
        code=code("tables"),
    output:
        RES + "/gaps/{dataset}/{variant}/{family}.parquet",
    params:
        cfg=model_cfg,
        evaluation=config["evaluation"],
    log:
        RES + "/logs/gaps/{dataset}/{variant}/{family}.log",
    benchmark:
        RES + "/benchmarks/gaps/{dataset}/{variant}/{family}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/gaps.py"


rule table2:
    """Table 2: every quantity per (dataset, trained family), mean and standard error."""
    input:
        [f"{RES}/gaps/{d}/standard/{f}.parquet" for d, f in table2_keys()],
    output:
        csv=RES + "/table2.csv",
        md=RES + "/table2.md",
    params:
        models=table2_keys(),
    log:
        RES + "/logs/table2.log",
    benchmark:
        RES + "/benchmarks/table2.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/table2.py"

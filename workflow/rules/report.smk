rule gaps:
    """Per-datapoint log p̂ = max(AIS, IWAE of q*), the bounds and the three gaps of one model."""
    input:
        amortized=f"{EVAL}/amortized.parquet",
        local_ffg=f"{EVAL}/local_ffg.parquet",
        local_flow=f"{EVAL}/local_flow.parquet",
        ais=f"{EVAL}/ais.parquet",
        code=code("tables"),
    output:
        f"{RES}/gaps/{{dataset}}/{{variant}}/{{family}}.parquet",
    params:
        cfg=model_cfg,
        evaluation=eval_cfg,
        local=lambda w: {f: local_config(eval_cfg(w)["local"], f) for f in ("ffg", "flow")},
    log:
        f"{RES}/logs/gaps/{{dataset}}/{{variant}}/{{family}}.log",
    benchmark:
        f"{RES}/benchmarks/gaps/{{dataset}}/{{variant}}/{{family}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/gaps.py"


rule table2:
    """Table 2: every quantity per (dataset, trained family), mean and standard error."""
    input:
        gaps=[f"{RES}/gaps/{d}/standard/{f}.parquet" for d, f in table2_keys()],
        bdmc=[f"{RES}/bdmc/{d}/standard/{f}/main.parquet" for d, f in table2_keys()],
    output:
        csv=report(f"{RES}/table2.csv", caption="../report/table2.rst", category="Tables"),
        md=f"{RES}/table2.md",
        paired=f"{RES}/table2_paired.csv",
    params:
        models=table2_keys(),
    log:
        f"{RES}/logs/table2.log",
    benchmark:
        f"{RES}/benchmarks/table2.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/table2.py"

# The claims (docs/method.md §7), tested on the per-datapoint numbers of every experiment.


rule claims:
    """Each claim of docs/method.md §7 tested on this run's per-datapoint numbers."""
    localrule: True
    input:
        gaps=[ref_path(d, f"{v}/{f}", "gaps") for d, v, f in claim_gap_keys()],
        flows_amortization=f"{RES}/flows_amortization.parquet",
        decoder_capacity=f"{RES}/decoder_capacity.parquet",
        over_training=f"{RES}/gaps_over_training.parquet",
        figure2_bounds=f"{RES}/figure2/bounds.parquet",
        figure2_grid=f"{RES}/figure2/grid.parquet",
        bdmc=f"{RES}/bdmc.csv",
        code=script_code("claims"),
    output:
        csv=report(f"{RES}/claims.csv", caption="../report/claims.rst", category="Claims"),
        md=f"{RES}/claims.md",
    params:
        gap_keys=claim_gap_keys(),
        # a function: read only when claims run, which needs figure2 configured
        figure2_dataset=lambda w: f"{F2['dataset']} (2-D latent)",
    log:
        log_path("claims"),
    benchmark:
        bench_path("claims")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/claims.py"

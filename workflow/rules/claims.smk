# The claims (docs/method.md §7), tested on the per-datapoint numbers of every experiment: the
# gaps of the Table 2 and Table 3 models, and each experiment's file its declaration names for them
# (src/vaegaps/pipeline/experiments.yaml, `claims`).


rule claims:
    """Each claim of docs/method.md §7 tested on this run's per-datapoint numbers."""
    localrule: True
    input:
        **{name: f"{RES}/{path}" for name, path in claims_inputs().items()},
        gaps=[ref_path(d, f"{v}/{f}", "gaps") for d, v, f in claim_gap_keys()],
        code=script_code("claims"),
    output:
        csv=report(f"{RES}/claims.csv", caption=caption("claims"), category="Claims"),
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

# Table 3 (docs/method.md §6): Table 2's quantities for the variant models, each trained and
# evaluated by the same rules as Table 2 through its variant wildcard. Declared as the experiment
# `variant_tables` (src/vaegaps/pipeline/experiments.yaml).


rule table3:
    """Table 3: Table 2's quantities for the variant models (larger encoder, no annealing)."""
    localrule: True
    input:
        gaps=[ref_path(d, f"{v}/{f}", "gaps") for d, v, f in experiment_models("variant_tables")],
        code=script_code("table3"),
    output:
        csv=report(f"{RES}/table3.csv", caption=caption("table3"), category="Tables"),
    params:
        models=experiment_models("variant_tables"),
    log:
        log_path("table3"),
    benchmark:
        bench_path("table3")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/table3.py"

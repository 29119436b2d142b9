# BDMC (docs/method.md §5, §6): the bounds of each AIS setting on data simulated from every model
# whose log p̂ a table or claim uses (bdmc_keys), from the bdmc and gather_parts jobs
# (evaluate.smk), in one table.


rule bdmc_table:
    """BDMC lower and upper bounds and their gap, per model and AIS setting."""
    localrule: True
    input:
        bdmc=[bdmc_file(*key) for key in bdmc_keys()],
        code=script_code("bdmc_table"),
    output:
        csv=report(f"{RES}/bdmc.csv", caption=caption("bdmc"), category="Tables"),
    params:
        models=bdmc_keys(),
        settings={f"{d}/{s}": ais_setting(d, s) for d, _, _, s, _ in bdmc_keys()},
    log:
        log_path("bdmc_table"),
    benchmark:
        bench_path("bdmc_table")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/bdmc_table.py"

# The captions (workflow/report/*.rst) use a table directive and a settings role, registered
# with docutils where `snakemake --report` renders them: in the main process, never in a job. The
# settings they print are those recorded in the results, whichever --configfile the report names.
if workflow.is_main_process:
    import importlib.util as _importlib_util

    _spec = _importlib_util.spec_from_file_location(
        "vaegaps_report_rst", Path(workflow.basedir) / "workflow" / "report" / "rst_extensions.py"
    )
    _rst = _importlib_util.module_from_spec(_spec)
    _spec.loader.exec_module(_rst)
    _rst.register(RES, RESOLVED)  # settings from the results' provenance, not this config


rule gaps:
    """Per-datapoint log p̂ = max(AIS, IWAE of q*), the bounds and the three gaps of one model."""
    localrule: True
    input:
        amortized=f"{EVAL}/amortized.parquet",
        local_ffg=f"{EVAL}/local_ffg.parquet",
        local_flow=f"{EVAL}/local_flow.parquet",
        ais=f"{EVAL}/ais.parquet",
        code=script_code("gaps"),
    output:
        f"{RES}/gaps/{MODEL_ID}.parquet",
    params:
        cfg=model_cfg,
        evaluation=eval_cfg,
        local=lambda w: {f: local_config(eval_cfg(w)["local"], f) for f in ("ffg", "flow")},
    log:
        log_path("gaps", MODEL_ID),
    benchmark:
        bench_path("gaps", MODEL_ID)
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/gaps.py"


rule table2:
    """Table 2: every quantity per (dataset, trained family), mean and standard error."""
    localrule: True
    input:
        gaps=[f"{RES}/gaps/{d}/standard/{f}.parquet" for d, f in table2_keys()],
        bdmc=[f"{RES}/bdmc/{d}/standard/{f}/main.parquet" for d, f in table2_keys()],
        code=script_code("table2"),
    output:
        csv=report(f"{RES}/table2.csv", caption="../report/table2.rst", category="Tables"),
        md=f"{RES}/table2.md",
    params:
        models=table2_keys(),
    log:
        log_path("table2"),
    benchmark:
        bench_path("table2")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/table2.py"

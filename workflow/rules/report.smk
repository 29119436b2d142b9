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


rule table2:
    """Table 2: every quantity per (dataset, trained family), mean and standard error."""
    localrule: True
    input:
        gaps=[ref_path(d, f"standard/{f}", "gaps") for d, f in table2_keys()],
        bdmc=[ref_path(d, f"standard/{f}", "bdmc") for d, f in table2_keys()],
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

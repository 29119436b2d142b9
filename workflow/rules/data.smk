rule prepare_dataset:
    """Find (local folder, Debian's package, cache) or download and verify a dataset; binarize and split."""
    localrule: True
    # ancient: a whole data file is never rebuilt for an edit of code or registry (README,
    # Troubleshooting). Its rebuild would hide every other stale job in the same run: they read
    # it as ancient, and Snakemake then plans the rebuild alone.
    input:
        code=ancient(script_code("prepare_dataset")),
        registry=ancient(Path(workflow.basedir) / "src" / "vaegaps" / "datasets.yaml"),  # read by datasets.py
    output:
        f"{RES}/data/{{dataset}}.parquet",
    params:
        data=config["data"],
    log:
        log_path("prepare_dataset", "{dataset}"),
    benchmark:
        bench_path("prepare_dataset", "{dataset}")
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/prepare_dataset.py"

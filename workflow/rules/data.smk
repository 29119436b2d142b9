rule prepare_dataset:
    """Find (local folder, Debian's package, cache) or download and verify a dataset; binarize and split."""
    localrule: True
    input:
        code=script_code("prepare_dataset"),
        registry=Path(workflow.basedir) / "src" / "vaegaps" / "datasets.yaml",  # data read by datasets.py
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

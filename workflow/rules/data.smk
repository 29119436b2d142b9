rule prepare_dataset:
    """Find (local folder, Debian's package, cache) or download and verify a dataset; binarize and split."""
    input:
        code("data"),
    output:
        RES + "/data/{dataset}.parquet",
    params:
        data=config["data"],
    log:
        RES + "/logs/prepare_dataset/{dataset}.log",
    benchmark:
        RES + "/benchmarks/prepare_dataset/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    script:
        "../scripts/prepare_dataset.py"

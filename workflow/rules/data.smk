rule prepare_dataset:
    """Find (local folder, Debian's package, cache) or download and verify a dataset; binarize and split."""
    input:
        code=script_code("prepare_dataset"),
    output:
        f"{RES}/data/{{dataset}}.parquet",
    params:
        data=config["data"],
    log:
        f"{RES}/logs/prepare_dataset/{{dataset}}.log",
    benchmark:
        f"{RES}/benchmarks/prepare_dataset/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/prepare_dataset.py"

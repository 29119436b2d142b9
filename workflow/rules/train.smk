rule train_vae:
    """Train one VAE (dataset x variant x encoder family) with entropy annealing; resumable."""
    input:
        data=RES + "/data/{dataset}.parquet",
        code=code("train", "data", *MODEL_CODE),
    output:
        model=MODEL + "/model.pt",
        history=MODEL + "/history.parquet",
    params:
        cfg=model_cfg,
        checkpoint=RES + "/resume/{dataset}/{variant}/{family}/train.ckpt",
    log:
        RES + "/logs/train_vae/{dataset}/{variant}/{family}.log",
    benchmark:
        RES + "/benchmarks/train_vae/{dataset}/{variant}/{family}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    script:
        "../scripts/train_vae.py"

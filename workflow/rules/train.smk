rule train_vae:
    """Train one VAE (dataset x variant x encoder family) with entropy annealing; resumable."""
    input:
        data=f"{RES}/data/{{dataset}}.parquet",
        base=base_decoder,
        code=code("train", "data", *MODEL_CODE),
    output:
        model=f"{MODEL}/model.pt",
        history=f"{MODEL}/history.parquet",
        snapshots=directory(f"{MODEL}/snapshots"),
    params:
        cfg=model_cfg,
        checkpoint=f"{RES}/resume/{{dataset}}/{{variant}}/{{family}}/train.ckpt",
    log:
        f"{RES}/logs/train_vae/{{dataset}}/{{variant}}/{{family}}.log",
    benchmark:
        f"{RES}/benchmarks/train_vae/{{dataset}}/{{variant}}/{{family}}.tsv"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/train_vae.py"

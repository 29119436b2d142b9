rule train_vae:
    """Train one VAE (dataset x variant x encoder family) with entropy annealing; resumable."""
    input:
        # ancient: a rebuilt data file (after damage; same settings, same content) must never
        # retrain, nor delete the trained model first; edits of data.py rerun through `code`
        data=ancient(f"{RES}/data/{{dataset}}.parquet"),
        base=base_decoder,
        code=script_code("train_vae"),
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

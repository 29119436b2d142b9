rule train_vae:
    """Train one VAE (dataset x variant x encoder family) with entropy annealing; resumable."""
    input:
        # ancient: a rebuilt data file (after damage; same settings, same content) must never
        # retrain, nor delete the trained model first; edits of the data code rerun through `code`
        data=ancient(f"{RES}/data/{{dataset}}.parquet"),
        base=base_decoder,
        code=script_code("train_vae"),
    output:
        model=f"{MODEL}/model.pt",
        history=f"{MODEL}/history.parquet",
        snapshots=directory(f"{MODEL}/snapshots"),
    params:
        cfg=model_cfg,
        checkpoint=f"{RES}/resume/{MODEL_ID}/train.ckpt",
    log:
        log_path("train_vae", MODEL_ID),
    benchmark:
        bench_path("train_vae", MODEL_ID)
    threads: THREADS
    resources:
        **GPU_DAY_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/train_vae.py"

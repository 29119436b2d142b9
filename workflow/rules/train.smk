# Each settings' training has its own folder, results/trained/MODEL/KEY/ (KEY: vaegaps.config.
# settings_key), and results/models/MODEL/ is a copy of the current settings' one. Snakemake deletes
# a job's outputs before it runs and after it fails: a retrain of new settings therefore deletes
# nothing of the old ones, and the copy in results/models/ is replaced only once it succeeded.


rule train_vae:
    """Train one VAE (dataset x variant x encoder family) with entropy annealing; resumable."""
    input:
        # ancient: a rebuilt data file (after damage; same settings, same content) must never
        # retrain, nor delete the trained model first; edits of the data code rerun through `code`
        data=ancient(f"{RES}/data/{{dataset}}.parquet"),
        base=base_decoder,
        code=script_code("train_vae"),
    output:
        model=f"{TRAINED}/model.pt",
        history=f"{TRAINED}/history.parquet",
        snapshots=directory(f"{TRAINED}/snapshots"),
    params:
        cfg=train_cfg,
        checkpoint=f"{RES}/resume/{MODEL_ID}/train/{{key}}/train.ckpt",
    log:
        log_path("train_vae", MODEL_ID, "{key}"),
    benchmark:
        bench_path("train_vae", MODEL_ID, "{key}")
    threads: THREADS
    resources:
        **GPU_DAY_JOB,
    wildcard_constraints:
        key="[0-9a-f]{16}",
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/train_vae.py"


rule current_model:
    """The model of the current settings, where every later rule reads it: a copy of its training."""
    localrule: True
    input:
        model=trained("model.pt"),
        history=trained("history.parquet"),
        snapshots=trained("snapshots"),
        code=script_code("current_model"),
    output:
        model=f"{MODEL}/model.pt",
        history=f"{MODEL}/history.parquet",
        snapshots=directory(f"{MODEL}/snapshots"),
    log:
        log_path("current_model", MODEL_ID),
    benchmark:
        bench_path("current_model", MODEL_ID)
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/current_model.py"

# Gaps over training (docs/method.md §6): the estimates at every saved snapshot of the
# over-training models (over_training_point, in evaluate.smk), summarised and plotted. Declared in
# src/vaegaps/pipeline/experiments.yaml; its settings, OT, are read in common.smk (evaluate.smk uses
# them).


rule gaps_over_training:
    """The gaps at every snapshot of the over-training models, summarised per split."""
    localrule: True
    input:
        points=[
            f"{RES}/over_training/{OT['dataset']}/{r}/epoch_{e}.parquet" for _, r, e in snapshot_keys("over_training")
        ],
        code=script_code("gaps_over_training"),
    output:
        csv=report(f"{RES}/gaps_over_training.csv", caption=caption("gaps_over_training"), category="Tables"),
        per_datapoint=f"{RES}/gaps_over_training.parquet",
    params:
        models=snapshot_keys("over_training"),
        dataset=OT.get("dataset"),
        settings=OT.get("evaluation", {}),
    log:
        log_path("gaps_over_training"),
    benchmark:
        bench_path("gaps_over_training")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/gaps_over_training.py"


rule figure_gaps_over_training:
    """2×4 panels: approximation and amortization bands over training, train and validation."""
    localrule: True
    input:
        summary=f"{RES}/gaps_over_training.csv",
        code=script_code("figure_gaps_over_training"),
    output:
        png=report(
            f"{RES}/figures/gaps_over_training.png",
            caption=caption("figure_gaps_over_training"),
            category="Figures",
        ),
        pdf=f"{RES}/figures/gaps_over_training.pdf",
    log:
        log_path("figure_gaps_over_training"),
    benchmark:
        bench_path("figure_gaps_over_training")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/figure_gaps_over_training.py"

# Gaps over training (docs/method.md §6): the estimates at every saved snapshot of the
# over-training models (over_training_point, in evaluate.smk), summarised and plotted.


rule gaps_over_training:
    """The gaps at every snapshot of the over-training models, summarised per split."""
    localrule: True
    input:
        points=[f"{RES}/over_training/{OT['dataset']}/{r}/epoch_{e}.parquet" for _, r, e in over_training_keys()],
        code=script_code("gaps_over_training"),
    output:
        csv=report(f"{RES}/gaps_over_training.csv", caption="../report/gaps_over_training.rst", category="Tables"),
        per_datapoint=f"{RES}/gaps_over_training.parquet",
    params:
        models=over_training_keys(),
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
            caption="../report/figure_gaps_over_training.rst",
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

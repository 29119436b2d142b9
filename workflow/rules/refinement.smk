# The refinement curve (docs/method.md §12): for every Table 2 and Table 3 model, the ELBO of each
# datapoint's copy of the encoder's q after k gradient steps, for every k of
# `evaluation.refinement.steps` (the estimator `refinement` of its model source, evaluate.smk:
# results/eval/DATASET/VARIANT/FAMILY/refinement.parquet), then the fraction of the amortization
# gap they close, per model, and its figure.


rule refinement_table:
    """Per model and k: the mean ELBO after k steps and the fraction of the amortization gap
    L[q*] − L[q] (q* of the encoder's own family) it closes, on the same datapoints."""
    localrule: True
    input:
        curves=[ref_path(d, f"{v}/{f}", "refinement") for d, v, f in refinement_keys()],
        amortized=[ref_path(d, f"{v}/{f}", "amortized") for d, v, f in refinement_keys()],
        qstar=[ref_path(d, f"{v}/{f}", f"local_{f}") for d, v, f in refinement_keys()],
        code=script_code("refinement_table"),
    output:
        csv=report(f"{RES}/refinement.csv", caption=caption("refinement"), category="Tables"),
    params:
        models=refinement_keys(),
    log:
        log_path("refinement_table"),
    benchmark:
        bench_path("refinement_table")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/refinement_table.py"


rule figure_refinement:
    """The fraction of the amortization gap closed against k, one line and band per model."""
    localrule: True
    input:
        table=f"{RES}/refinement.csv",
        code=script_code("figure_refinement"),
    output:
        png=report(f"{RES}/figures/refinement.png", caption=caption("figure_refinement"), category="Figures"),
        pdf=f"{RES}/figures/refinement.pdf",
    log:
        log_path("figure_refinement"),
    benchmark:
        bench_path("figure_refinement")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/figure_refinement.py"

# Figure 2 (docs/method.md §6): true posteriors of 2-D latent models, by grid quadrature. Declared
# in src/vaegaps/pipeline/experiments.yaml.

F2 = experiment("figure2")

# Its models (VARIANT/ffg, VARIANT/flow of its dataset) and data; none in a study without the
# experiment, whose `all` never asks for these rules.
F2_FILES = (
    {
        "ffg": ref_path(F2["dataset"], f"{F2['variant']}/ffg", "model"),
        "flow": ref_path(F2["dataset"], f"{F2['variant']}/flow", "model"),
        "data": f"{RES}/data/{F2['dataset']}.parquet",
    }
    if F2
    else {"ffg": [], "flow": [], "data": []}
)


rule figure2:
    """Figure 2: true posterior of a 2-D latent FFG model vs amortized, optimal FFG and optimal Flow."""
    input:
        model=F2_FILES["ffg"],
        data=ancient(F2_FILES["data"]),
        code=script_code("figure2"),
    output:
        grid=f"{RES}/figure2/grid.parquet",
        bounds=f"{RES}/figure2/bounds.parquet",
        png=report(f"{RES}/figures/figure2.png", caption=caption("figure2"), category="Figures"),
        pdf=f"{RES}/figures/figure2.pdf",
    params:
        figure=F2,
        seed=config["seed"],
    log:
        log_path("figure2"),
    benchmark:
        bench_path("figure2")
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/figure2.py"


rule figure_posteriors:
    """True posteriors of the same datapoints under a 2-D model trained with FFG and one with Flow."""
    input:
        ffg=F2_FILES["ffg"],
        flow=F2_FILES["flow"],
        data=ancient(F2_FILES["data"]),
        code=script_code("figure_posteriors"),
    output:
        grid=f"{RES}/figure2/posteriors_grid.parquet",
        png=report(
            f"{RES}/figures/posteriors_ffg_vs_flow.png", caption=caption("figure_posteriors"), category="Figures"
        ),
        pdf=f"{RES}/figures/posteriors_ffg_vs_flow.pdf",
    params:
        figure=F2,
        seed=config["seed"],
    log:
        log_path("figure_posteriors"),
    benchmark:
        bench_path("figure_posteriors")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/figure_posteriors.py"

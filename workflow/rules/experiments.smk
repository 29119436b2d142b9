# docs/method.md §6 beyond Table 2. Every model here is trained and evaluated by the same rules as
# Table 2 (train_vae, amortized_bounds, local_optimum, ais, gaps) through its variant wildcard.


rule table3:
    """Table 3: Table 2's quantities for the variant models (larger encoder, no annealing)."""
    input:
        gaps=[ref_path(d, f"{v}/{f}", "gaps") for d, v, f in variant_keys()],
        code=script_code("table3"),
    output:
        csv=report(f"{RES}/table3.csv", caption="../report/table3.rst", category="Tables"),
    params:
        models=variant_keys(),
    log:
        f"{RES}/logs/table3.log",
    benchmark:
        f"{RES}/benchmarks/table3.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/table3.py"


rule flows_amortization:
    """Frozen decoder, new encoders: L[q], L[q*] of the encoder's family and the amortization gap."""
    input:
        amortized=[ref_path(FA["dataset"], r, "amortized") for r in FA.get("encoders", {}).values()],
        local=[ref_path(FA["dataset"], r, f"local_{split_ref(r)[1]}") for r in FA.get("encoders", {}).values()],
        code=script_code("flows_amortization"),
    output:
        csv=report(f"{RES}/flows_amortization.csv", caption="../report/flows_amortization.rst", category="Tables"),
        per_datapoint=f"{RES}/flows_amortization.parquet",
    params:
        dataset=FA.get("dataset"),
        encoders=FA.get("encoders", {}),
        evaluation=lambda w: evaluation_config(config, FA["dataset"]),
    log:
        f"{RES}/logs/flows_amortization.log",
    benchmark:
        f"{RES}/benchmarks/flows_amortization.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/flows_amortization.py"


rule decoder_capacity:
    """Gaps of FFG models with decoders of 0, 2 and 4 hidden layers, with local FFG and Flow."""
    input:
        gaps=[ref_path(DC["dataset"], r, "gaps") for r in DC.get("models", {}).values()],
        code=script_code("decoder_capacity"),
    output:
        csv=report(f"{RES}/decoder_capacity.csv", caption="../report/decoder_capacity.rst", category="Tables"),
    params:
        dataset=DC.get("dataset"),
        layers=[int(k) for k in DC.get("models", {})],
    log:
        f"{RES}/logs/decoder_capacity.log",
    benchmark:
        f"{RES}/benchmarks/decoder_capacity.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/decoder_capacity.py"


rule over_training_point:
    """One model snapshot: log p̂, L[q*], L[q] on n training and n validation points."""
    input:
        snapshots=f"{MODEL}/snapshots",
        data=ancient(f"{RES}/data/{{dataset}}.parquet"),
        code=script_code("over_training_point"),
    output:
        f"{RES}/over_training/{{dataset}}/{{variant}}/{{family}}/epoch_{{epoch}}.parquet",
    params:
        settings=OT.get("evaluation", {}),
        n_points=OT.get("n_points"),
        seed=config["seed"],
    log:
        f"{RES}/logs/over_training/{{dataset}}/{{variant}}/{{family}}/epoch_{{epoch}}.log",
    benchmark:
        f"{RES}/benchmarks/over_training/{{dataset}}/{{variant}}/{{family}}/epoch_{{epoch}}.tsv"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=6 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/over_training_point.py"


rule gaps_over_training:
    """The gaps at every snapshot of the over-training models, summarised per split."""
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
        f"{RES}/logs/gaps_over_training.log",
    benchmark:
        f"{RES}/benchmarks/gaps_over_training.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/gaps_over_training.py"


rule figure_gaps_over_training:
    """2×4 panels: approximation and amortization bands over training, train and validation."""
    input:
        summary=f"{RES}/gaps_over_training.csv",
        code=script_code("figure_gaps_over_training"),
    output:
        png=report(f"{RES}/figures/gaps_over_training.png", caption="../report/figure_gaps_over_training.rst", category="Figures"),
        pdf=f"{RES}/figures/gaps_over_training.pdf",
    log:
        f"{RES}/logs/figure_gaps_over_training.log",
    benchmark:
        f"{RES}/benchmarks/figure_gaps_over_training.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/figure_gaps_over_training.py"


rule figure2:
    """Figure 2: true posterior of a 2-D latent FFG model vs amortized, optimal FFG and optimal Flow."""
    input:
        model=ref_path(F2.get("dataset", "digits"), f"{F2.get('variant', 'z2')}/ffg", "model"),
        data=ancient(f"{RES}/data/{F2.get('dataset', 'digits')}.parquet"),
        code=script_code("figure2"),
    output:
        grid=f"{RES}/figure2/grid.parquet",
        bounds=f"{RES}/figure2/bounds.parquet",
        png=report(f"{RES}/figures/figure2.png", caption="../report/figure2.rst", category="Figures"),
        pdf=f"{RES}/figures/figure2.pdf",
    params:
        figure=F2,
        seed=config["seed"],
    log:
        f"{RES}/logs/figure2.log",
    benchmark:
        f"{RES}/benchmarks/figure2.tsv"
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
        ffg=ref_path(F2.get("dataset", "digits"), f"{F2.get('variant', 'z2')}/ffg", "model"),
        flow=ref_path(F2.get("dataset", "digits"), f"{F2.get('variant', 'z2')}/flow", "model"),
        data=ancient(f"{RES}/data/{F2.get('dataset', 'digits')}.parquet"),
        code=script_code("figure_posteriors"),
    output:
        grid=f"{RES}/figure2/posteriors_grid.parquet",
        png=report(f"{RES}/figures/posteriors_ffg_vs_flow.png", caption="../report/figure_posteriors.rst", category="Figures"),
        pdf=f"{RES}/figures/posteriors_ffg_vs_flow.pdf",
    params:
        figure=F2,
        seed=config["seed"],
    log:
        f"{RES}/logs/figure_posteriors.log",
    benchmark:
        f"{RES}/benchmarks/figure_posteriors.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/figure_posteriors.py"


rule bdmc:
    """Forward and reverse AIS on data simulated from a model, at one AIS setting (main or over_training)."""
    input:
        model=f"{MODEL}/model.pt",
        code=script_code("bdmc"),
    output:
        f"{RES}/bdmc/{{dataset}}/{{variant}}/{{family}}/{{setting}}/{PART}.parquet",
    params:
        ais=lambda w: ais_setting(w.dataset, w.setting),
        n_points=BD["n_points"],
        seed=config["seed"],
    log:
        f"{RES}/logs/bdmc/{{dataset}}/{{variant}}/{{family}}/{{setting}}/{PART}.log",
    benchmark:
        f"{RES}/benchmarks/bdmc/{{dataset}}/{{variant}}/{{family}}/{{setting}}/{PART}.tsv"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=24 * 60,
        gpu=GPU,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/bdmc.py"


rule gather_bdmc:
    """The BDMC parts of one model and AIS setting, joined in datapoint order."""
    input:
        parts=lambda w: parts_of(f"{RES}/bdmc/{w.dataset}/{w.variant}/{w.family}/{w.setting}",
                                 eval_cfg(w)["parts"]),
        code=script_code("gather_parts"),
    output:
        f"{RES}/bdmc/{{dataset}}/{{variant}}/{{family}}/{{setting}}.parquet",
    log:
        f"{RES}/logs/gather_bdmc/{{dataset}}/{{variant}}/{{family}}/{{setting}}.log",
    benchmark:
        f"{RES}/benchmarks/gather_bdmc/{{dataset}}/{{variant}}/{{family}}/{{setting}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/gather_parts.py"


rule bdmc_table:
    """BDMC lower and upper bounds and their gap, per model and AIS setting."""
    input:
        bdmc=[f"{RES}/bdmc/{d}/{v}/{f}/{s}.parquet" for d, v, f, s in bdmc_keys()],
        code=script_code("bdmc_table"),
    output:
        csv=report(f"{RES}/bdmc.csv", caption="../report/bdmc.rst", category="Tables"),
    params:
        models=bdmc_keys(),
        settings={f"{d}/{s}": ais_setting(d, s) for d, _, _, s in bdmc_keys()},
    log:
        f"{RES}/logs/bdmc_table.log",
    benchmark:
        f"{RES}/benchmarks/bdmc_table.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/bdmc_table.py"


rule claims:
    """Each claim of docs/method.md §7 tested on this run's per-datapoint numbers."""
    input:
        gaps=[ref_path(d, f"{v}/{f}", "gaps") for d, v, f in claim_gap_keys()],
        flows_amortization=f"{RES}/flows_amortization.parquet",
        over_training=f"{RES}/gaps_over_training.parquet",
        figure2_bounds=f"{RES}/figure2/bounds.parquet",
        figure2_grid=f"{RES}/figure2/grid.parquet",
        bdmc=f"{RES}/bdmc.csv",
        code=script_code("claims"),
    output:
        csv=report(f"{RES}/claims.csv", caption="../report/claims.rst", category="Claims"),
        md=f"{RES}/claims.md",
    params:
        gap_keys=claim_gap_keys(),
        figure2_dataset=f"{F2.get('dataset', 'digits')} (2-D latent)",
    log:
        f"{RES}/logs/claims.log",
    benchmark:
        f"{RES}/benchmarks/claims.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/claims.py"

# Flows and amortization (docs/method.md §6): new encoders on a frozen decoder, each model trained
# and evaluated by the same rules as Table 2 through its variant wildcard. Declared in
# src/vaegaps/pipeline/experiments.yaml.

FA = experiment("flows_amortization")


rule flows_amortization:
    """Frozen decoder, new encoders: L[q], L[q*] of the encoder's family and the amortization gap."""
    localrule: True
    input:
        amortized=[ref_path(FA["dataset"], r, "amortized") for r in FA.get("encoders", {}).values()],
        local=[ref_path(FA["dataset"], r, f"local_{split_ref(r)[1]}") for r in FA.get("encoders", {}).values()],
        code=script_code("flows_amortization"),
    output:
        csv=report(f"{RES}/flows_amortization.csv", caption=caption("flows_amortization"), category="Tables"),
        per_datapoint=f"{RES}/flows_amortization.parquet",
    params:
        dataset=FA.get("dataset"),
        encoders=FA.get("encoders", {}),
        evaluation=lambda w: evaluation_config(config, FA["dataset"]),
    log:
        log_path("flows_amortization"),
    benchmark:
        bench_path("flows_amortization")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/flows_amortization.py"

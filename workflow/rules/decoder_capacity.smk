# Decoder capacity (docs/method.md §6): FFG models with larger decoders, each trained and
# evaluated by the same rules as Table 2 through its variant wildcard. Declared in
# src/vaegaps/pipeline/experiments.yaml.

DC = experiment("decoder_capacity")


rule decoder_capacity:
    """Gaps of FFG models with decoders of 0, 2 and 4 hidden layers, with local FFG and Flow."""
    localrule: True
    input:
        gaps=[ref_path(DC["dataset"], r, "gaps") for r in DC.get("models", {}).values()],
        code=script_code("decoder_capacity"),
    output:
        csv=report(f"{RES}/decoder_capacity.csv", caption=caption("decoder_capacity"), category="Tables"),
        per_datapoint=f"{RES}/decoder_capacity.parquet",
    params:
        dataset=DC.get("dataset"),
        layers=[int(k) for k in DC.get("models", {})],
        refs=list(DC.get("models", {}).values()),
    log:
        log_path("decoder_capacity"),
    benchmark:
        bench_path("decoder_capacity")
    threads: 1
    resources:
        **LOCAL_JOB,
    conda:
        "../../envs/vaegaps.yaml"
    script:
        "../scripts/decoder_capacity.py"

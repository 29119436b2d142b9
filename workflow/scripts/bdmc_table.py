"""Snakemake stage: the BDMC table (lower, upper bound and gap per model and AIS setting)."""
import pandas as pd

from vaegaps.io import atomic_path
from vaegaps.stage import stage
from vaegaps.tables import summary_table

with stage(snakemake):  # noqa: F821 (injected by Snakemake)
    sm = snakemake  # noqa: F821
    frames = {tuple(key): pd.read_parquet(path) for key, path in zip(sm.params.models, sm.input)}
    table = summary_table(frames, ("dataset", "variant", "family", "setting"), ["lower", "upper", "gap"])
    settings = sm.params.settings
    table.insert(5, "n_intermediate", [settings[s]["n_intermediate"] for s in table["setting"]])
    table.insert(6, "n_chains", [settings[s]["n_chains"] for s in table["setting"]])
    with atomic_path(sm.output.csv) as tmp:
        table.to_csv(tmp, index=False)

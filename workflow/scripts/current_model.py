"""Snakemake stage: copy the current settings' trained model, history and snapshots from
results/trained/…/KEY/ to results/models/…/, where every later rule reads them (workflow/rules/train.smk)."""
import shutil
from pathlib import Path

from vaegaps.io import atomic_path
from vaegaps.pipeline.stage import stage


def copy(src, dst) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


with stage(snakemake):
    sm = snakemake
    copy(sm.input.model, sm.output.model)
    copy(sm.input.history, sm.output.history)
    Path(sm.output.snapshots).mkdir(parents=True, exist_ok=True)
    for snap in sorted(Path(sm.input.snapshots).iterdir()):
        copy(snap, Path(sm.output.snapshots) / snap.name)

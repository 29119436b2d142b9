"""Snakemake script: write one dataset's Parquet (find, verify, binarize, split).

Config keys used: data.source_dir ({dataset: folder} or null), data.cache_dir, data.download.
"""

import logging
import sys

from vaegaps.data import prepare_dataset
from vaegaps.errors import VaegapsError


def main(smk) -> None:
    name = smk.wildcards.dataset
    cfg = smk.config.get("data") or {}
    logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        prepare_dataset(name, smk.output[0], source_dir=(cfg.get("source_dir") or {}).get(name),
                        cache_dir=cfg.get("cache_dir"), download=bool(cfg.get("download", True)))
    except VaegapsError as exc:
        logging.error("%s", exc)
        sys.exit(f"error: {exc}")


main(snakemake)  # noqa: F821 (injected by Snakemake)

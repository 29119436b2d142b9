"""One evaluation path for every model source (docs/method.md §11): a VAE this study trains
(`BuiltinSource`, results/eval/DATASET/VARIANT/FAMILY) and a user's own model (`UserSource`,
results/user/NAME) run each estimator through the same driver, `run_estimator`: part p of k of the
evaluation set, in resumable chunks, through `vaegaps.evaluate.estimate`; and BDMC on data
simulated from the model through `run_bdmc`. A source says only how its model and datapoints are
loaded, which family its q* is in, and what its chunks' key and its metadata record.
"""

from __future__ import annotations

import contextlib
import logging

import pandas as pd

from ..config import ais_procedure, local_config, refinement_config
from ..evaluate import bdmc_validation, estimate, evaluation_set
from ..io import file_digest
from .scatter import chunk_key, part_bounds, run_in_chunks

log = logging.getLogger(__name__)

# the columns of a refinement curve, for a model that has none (no rows)
_NO_CURVE = {"index": "int64", "steps": "int64", "elbo": "float64", "elbo_se": "float64"}


class BuiltinSource:
    """A VAE of the study: its weights (`model_path`), its dataset's evaluation set (`data_path`)
    and that dataset's resolved `evaluation` settings; q* and the refinement curve are in the
    family it was trained with. BDMC reads no data (`data_path` None): it simulates its own."""

    refinement_key = "evaluation.refinement"

    def __init__(self, model_path: str, data_path: str | None, evaluation: dict, family: str, device_name: str):
        self.model_path, self.data_path, self.evaluation = model_path, data_path, evaluation
        self.qstar_family, self.device_name = family, device_name

    def load_model(self):
        """(model, device): the model on its device."""
        from ..runtime import resolve_device
        from ..vae import load_vae

        device = resolve_device(self.device_name)
        return load_vae(self.model_path, device), device

    def load(self):
        """(model, index, x): the model on its device and its evaluation set."""
        model, device = self.load_model()
        index, x = evaluation_set(self.data_path, self.evaluation["split"], self.evaluation["n_points"], device)
        return model, index, x

    def settings(self, estimator: str) -> dict:
        """The settings an estimator's results depend on, as its metadata records them: its section
        of `evaluation`; for q*, each family's resolved local settings it uses (a flow's own and
        FFG's, its start's)."""
        ev = self.evaluation
        if estimator in ("amortized", "ais"):
            return ev[estimator]
        if estimator == "refinement":
            return refinement_config(ev["refinement"], self.qstar_family)
        family = estimator.removeprefix("local_")
        return {f: local_config(ev["local"], f) for f in dict.fromkeys(("ffg", family))}

    def provenance(self, estimator: str, seed: int) -> dict:
        return {"estimator": estimator, "split": self.evaluation["split"], "settings": self.settings(estimator),
                "seed": seed}

    def key(self, provenance: dict, key_files: dict) -> str:
        return chunk_key(provenance, {"model": self.model_path, "data": self.data_path, **key_files})

    def metadata(self, provenance: dict, model) -> dict:
        return provenance

    def bdmc_provenance(self, run: dict, seed: int) -> dict:
        """What a BDMC run's metadata records: its AIS setting's name, the weights and their epoch."""
        return {"setting": run["setting"], "epoch": run["epoch"], "weights": run["weights"], "ais": run["ais"],
                "procedure": ais_procedure(run["ais"]), "seed": seed}

    def context(self, model):
        return contextlib.nullcontext()

    def refinable(self, model) -> bool:
        return True


class UserSource:
    """A user's model (`user_models.NAME`, resolved by vaegaps.user_config): built by its `model`
    spec, measured on its `data` file behind vaegaps.user_model's adapter; q* is in the family its
    encoder's q belongs to (none where unknown)."""

    def __init__(self, settings: dict, data_path: str, name: str | None = None):
        self.settings, self.data_path = settings, data_path
        self.evaluation = settings["evaluation"]
        self.refinement_key = f"user_models.{name}.evaluation.refinement" if name else "refinement"
        self.qstar_family = None

    def load(self):
        """(model, index, x): the user model behind the estimators' interface, checked on its first
        datapoints, and its evaluation set."""
        from ..user_eval import adapter
        from ..user_model import load_data, load_model

        s, ev = self.settings, self.evaluation
        index, x = load_data(self.data_path, ev["split"], ev["n_points"], s["shape"])
        user = adapter(load_model(s["model"], s["args"]), x, s)
        self.qstar_family = user.qstar_family
        return user, index, user.prepare(x)

    def load_model(self):
        """(model, device): the user model behind the estimators' interface (checked on its data)."""
        user, _, _ = self.load()
        return user, user.device

    def provenance(self, estimator: str, seed: int) -> dict:
        return {"estimator": estimator, "settings": self.settings, "seed": seed,
                "data": file_digest(self.data_path), "inputs": {p: file_digest(p) for p in self.settings["inputs"]}}

    def key(self, provenance: dict, key_files: dict) -> str:
        return chunk_key(provenance, key_files)

    def metadata(self, provenance: dict, model) -> dict:
        return {**provenance, "encoder_family": model.encoder_family, "qstar_family": model.qstar_family}

    def bdmc_provenance(self, run: dict, seed: int) -> dict:
        """What a BDMC run's metadata records: the model's settings and files, its AIS setting."""
        return {**self.provenance("bdmc", seed), "ais": run["ais"], "procedure": ais_procedure(run["ais"])}

    def context(self, model):
        from ..user_model import frozen, unvalidated_distributions

        stack = contextlib.ExitStack()
        stack.enter_context(frozen(model))
        stack.enter_context(unvalidated_distributions())
        return stack

    def refinable(self, model) -> bool:
        from ..user_eval import refinable

        return refinable(model)


def run_estimator(source, estimator: str, seed: int, part: tuple[int, int], resume_dir,
                  ffg_path: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Part `part` = (p, k) of one estimator on a model source, in chunks of
    `evaluation.chunk_size` resumable from `resume_dir`: its rows and metadata. `ffg_path`: q*_FFG
    of the same part, a flow's start; its digest keys the chunks (new q*_FFG results invalidate
    them), not the part's metadata, which must be the same for every part. A model without a
    refinement curve (its encoder's q copied into no family, docs/method.md §12) gets no rows."""
    model, index, x = source.load()
    start, stop = part_bounds(len(index), *part)
    ffg = pd.read_parquet(ffg_path) if ffg_path else None
    provenance = source.provenance(estimator, seed)
    key = source.key(provenance, {"ffg_start": ffg_path} if ffg_path else {})
    with source.context(model):
        if estimator == "refinement" and not source.refinable(model):
            log.warning("no refinement curve: the encoder's q (%s) is not copied into a family",
                        getattr(model, "encoder_family", model.family_name))
            df = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _NO_CURVE.items()})
        else:
            df = run_in_chunks(
                lambda i, xx: estimate(estimator, model, i, xx, source.evaluation, seed, source.qstar_family, ffg,
                                       refinement_key=source.refinement_key),
                index[start:stop], x[start:stop], source.evaluation["chunk_size"], resume_dir, key)
    return df, {**source.metadata(provenance, model), "part": part[0], "parts": part[1]}


def run_bdmc(source, run: dict, seed: int, part: tuple[int, int]) -> tuple[pd.DataFrame, dict]:
    """Part `part` = (p, k) of BDMC on `run["n_points"]` datapoints simulated from a model source,
    at AIS setting `run["ais"]` (docs/method.md §5): its rows and metadata."""
    model, device = source.load_model()
    with source.context(model):
        df = bdmc_validation(model, run["n_points"], run["ais"], seed, device,
                             part_bounds(run["n_points"], *part))
    return df, {**source.bdmc_provenance(run, seed), "part": part[0], "parts": part[1]}


__all__ = ["BuiltinSource", "UserSource", "run_bdmc", "run_estimator"]

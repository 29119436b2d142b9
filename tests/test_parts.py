"""Evaluation parts and resumable chunks: the cuts, the gathering, stale chunks, the SLURM device."""

import contextlib
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from vaegaps.errors import VaegapsError
from vaegaps.io import read_metadata, write_parquet
from vaegaps.pipeline.scatter import gather_parts, part_bounds, run_in_chunks
from vaegaps.runtime import slurm_withholds_gpu


@pytest.mark.parametrize("n,k", [(24, 1), (24, 3), (10, 3), (7, 7), (1000, 6)])
def test_parts_cover_every_datapoint_once_in_order(n, k):
    bounds = [part_bounds(n, p, k) for p in range(k)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # consecutive, no gap or overlap
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_bad_parts_name_the_fix():
    with pytest.raises(VaegapsError, match="more than the 4 datapoints"):
        part_bounds(4, 0, 5)
    with pytest.raises(VaegapsError, match="numbered 0..2"):
        part_bounds(10, 3, 3)


def _write_parts(tmp_path, k, n=10, settings=None):
    paths = []
    for p in range(k):
        a, b = part_bounds(n, p, k)
        path = tmp_path / f"part_{p}_of_{k}.parquet"
        write_parquet(pd.DataFrame({"index": np.arange(a, b), "v": np.arange(a, b) * 0.5}), path,
                      {"estimator": "x", "settings": (settings or {}).get(p, {"s": 1}), "part": p, "parts": k})
        paths.append(path)
    return paths


def test_gather_joins_parts_in_order_with_their_shared_metadata(tmp_path):
    df, meta = gather_parts(_write_parts(tmp_path, 3))
    assert df["index"].tolist() == list(range(10)) and df["v"].tolist() == [i * 0.5 for i in range(10)]
    assert meta["estimator"] == "x" and meta["parts"] == 3 and "part" not in meta


def test_gather_refuses_mixed_settings_and_wrong_parts(tmp_path):
    with pytest.raises(VaegapsError, match="different settings"):
        gather_parts(_write_parts(tmp_path, 3, settings={1: {"s": 2}}))
    paths = _write_parts(tmp_path, 3)
    with pytest.raises(VaegapsError, match="expected 1 of 3"):
        gather_parts([paths[0], paths[2], paths[1]])


def test_resume_reuses_a_chunk_only_under_the_same_key(tmp_path):
    calls = []

    def estimate(index, x):
        calls.append(index.tolist())
        return pd.DataFrame({"index": index, "v": x.sum(1).numpy()})

    index, x = np.arange(6), torch.arange(12.0).reshape(6, 2)
    first = run_in_chunks(estimate, index, x, 4, tmp_path, key="a")
    assert calls == [[0, 1, 2, 3], [4, 5]] and read_metadata(tmp_path / "chunk_0_3.parquet")["key"] == "a"
    again = run_in_chunks(estimate, index, x, 4, tmp_path, key="a")
    assert len(calls) == 2  # both chunks reused
    pd.testing.assert_frame_equal(first, again)
    run_in_chunks(estimate, index, x, 4, tmp_path, key="b")  # new model or settings
    assert len(calls) == 4  # stale chunks recomputed, not reused


@pytest.mark.parametrize("env,withheld", [
    ({}, False),  # not a SLURM job
    ({"SLURM_JOB_ID": "7"}, True),  # a job given no GPU
    ({"SLURM_JOB_ID": "7", "SLURM_JOB_GPUS": "0"}, False),
    ({"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "1"}, False),
])
def test_slurm_job_without_gpu_stays_on_cpu(env, withheld):
    assert slurm_withholds_gpu(env) is withheld


@pytest.mark.parametrize("kind", ["eval", "user"])
def test_chunks_are_keyed_by_the_start_a_part_read(tmp_path, monkeypatch, kind):
    """A q*_Flow part resumes only from chunks fitted on the same q*_FFG start, while the start
    stays out of the part's metadata (which every part of a stage shares): for a built-in model
    and a user's alike (vaegaps.pipeline.sources.run_estimator, the one driver of both)."""
    import vaegaps.pipeline.sources as src
    from vaegaps.config import defaults

    keys = []
    model = SimpleNamespace(encoder_family="ffg", qstar_family="ffg")
    monkeypatch.setattr(src, "run_in_chunks", lambda fn, index, x, size, resume, key: keys.append(key) or pd.DataFrame())
    weights, data, start = (tmp_path / n for n in ("model.pt", "data.parquet", "ffg.parquet"))
    for f in (weights, data):
        f.write_bytes(b"v1")
    pd.DataFrame({"index": [0, 1]}).to_parquet(start)
    evaluation = {**defaults("evaluation"), "split": "train", "n_points": 4, "chunk_size": 2}
    if kind == "eval":
        source = src.BuiltinSource(str(weights), str(data), evaluation, "flow", "cpu")
    else:
        source = src.UserSource({"evaluation": evaluation, "inputs": [str(weights)]}, str(data), "m")
        monkeypatch.setattr(src.UserSource, "context", lambda self, m: contextlib.nullcontext())
    monkeypatch.setattr(type(source), "load", lambda self: (model, np.arange(4), torch.zeros(4, 2)))

    def run():
        return src.run_estimator(source, "local_flow", 0, (0, 1), tmp_path, str(start))[1]

    metas = [run(), run()]
    pd.DataFrame({"index": [0, 1, 2]}).to_parquet(start)   # q*_FFG refitted
    metas.append(run())
    assert keys[0] == keys[1] != keys[2]
    assert metas[0] == metas[2] and "ffg_start" not in str(metas[0]) and metas[0]["estimator"] == "local_flow"


@pytest.mark.parametrize("kind", ["eval", "user"])
def test_bdmc_of_either_source_through_one_driver(monkeypatch, kind):
    """BDMC of a built-in model and of a user's runs through vaegaps.pipeline.sources.run_bdmc: the
    part's rows of the simulated points, the model's device, and the metadata each source records
    (a built-in model's setting, epoch and weights; a user model's settings and files)."""
    import vaegaps.pipeline.sources as src
    from vaegaps.config import defaults

    calls = []
    model, ais = SimpleNamespace(device="cpu"), defaults("evaluation")["ais"]
    monkeypatch.setattr(src, "bdmc_validation", lambda m, n, cfg, seed, device, rows: calls.append(
        (m, n, cfg, seed, device, rows)) or pd.DataFrame({"index": range(*rows)}))
    run = {"n_points": 10, "ais": ais}
    if kind == "eval":
        run = {**run, "weights": "w.pt", "setting": "over_training", "epoch": 3}
        source = src.BuiltinSource("w.pt", None, defaults("evaluation"), "ffg", "cpu")
        monkeypatch.setattr(src.BuiltinSource, "load_model", lambda self: (model, "cpu"))
    else:
        source = src.UserSource({"evaluation": defaults("evaluation"), "inputs": []}, "data.npy", "m")
        monkeypatch.setattr(src.UserSource, "load_model", lambda self: (model, model.device))
        monkeypatch.setattr(src.UserSource, "context", lambda self, m: contextlib.nullcontext())
        monkeypatch.setattr(src, "file_digest", lambda p: "digest")
    df, meta = src.run_bdmc(source, run, 7, (1, 3))
    assert calls == [(model, 10, ais, 7, "cpu", (3, 6))] and df["index"].tolist() == [3, 4, 5]
    assert (meta["part"], meta["parts"], meta["ais"]) == (1, 3, ais) and "AIS" in meta["procedure"]
    if kind == "eval":
        assert {k: meta[k] for k in ("setting", "epoch", "weights", "seed")} == {
            "setting": "over_training", "epoch": 3, "weights": "w.pt", "seed": 7}
    else:
        assert meta["estimator"] == "bdmc" and meta["data"] == "digest" and "setting" not in meta


def test_resume_chunks_are_keyed_by_the_package_code(monkeypatch, tmp_path):
    """A chunk saved by other code (e.g. before a column was added) is recomputed on a rerun,
    not mixed into the new output: the package's source digest is part of the chunk key."""
    from vaegaps.pipeline import scatter

    calls = []

    def estimate(i, x):
        calls.append(len(i))
        return pd.DataFrame({"index": i, "value": 0.0})

    index, x = np.arange(4), torch.zeros(4, 2)
    key = scatter.chunk_key({"estimator": "t"}, {})
    run_in_chunks(estimate, index, x, 2, tmp_path, key)
    run_in_chunks(estimate, index, x, 2, tmp_path, scatter.chunk_key({"estimator": "t"}, {}))
    assert calls == [2, 2]                      # same code: both chunks reused
    scatter.package_digest.cache_clear()
    monkeypatch.setattr(scatter, "file_digest", lambda p: "other code")
    new_key = scatter.chunk_key({"estimator": "t"}, {})
    scatter.package_digest.cache_clear()
    assert new_key != key
    run_in_chunks(estimate, index, x, 2, tmp_path, new_key)
    assert calls == [2, 2, 2, 2]                # other code: both recomputed


def test_parts_are_checked_on_every_dataset_bdmc_certifies():
    """BDMC runs on an experiment's dataset even when Table 2 does not: its parts are checked
    there too, before the DAG, with the key to lower."""
    from pathlib import Path

    from vaegaps.config import validate
    from vaegaps.pipeline.study import check_parts

    schema = Path(__file__).resolve().parents[1] / "src" / "vaegaps" / "config.schema.yaml"
    config = validate({"datasets": ["digits"], "variants": {"standard": {}, "large_encoder": {}},
                       "dataset_overrides": {"mnist": {"evaluation": {"parts": 30}}},
                       "experiments": {"bdmc": {"n_points": 20},
                                       "variant_tables": {"datasets": ["mnist"], "variants": ["large_encoder"],
                                                          "families": ["ffg"]}}}, schema)
    with pytest.raises(VaegapsError, match=r"evaluation.parts \(30\) for mnist is more than experiments.bdmc.n_points"):
        check_parts(config)
    config["dataset_overrides"]["mnist"]["evaluation"]["parts"] = 20
    check_parts(config)


def test_a_stage_records_its_study_and_nothing_is_global(tmp_path, monkeypatch):
    """The study's settings reach a Parquet's metadata only through the job's `Stage` (or an
    explicit `provenance=`): a plain write after a stage records none (no global state)."""
    from vaegaps.pipeline.stage import stage

    monkeypatch.chdir(tmp_path)  # no .snakemake/ here: the stage takes no run lock
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # the stage pins them: restored after the test
        monkeypatch.setenv(var, os.environ.get(var, ""))
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    sm = SimpleNamespace(log=[str(tmp_path / "stage.log")], threads=threads, config={"seed": 7, "results": "r"})
    df = pd.DataFrame({"index": [0, 1]})
    with stage(sm) as job:
        job.write_parquet(df, tmp_path / "a.parquet", {"estimator": "t"})
        write_parquet(df, tmp_path / "b.parquet", {"estimator": "t"})
    a, b = read_metadata(tmp_path / "a.parquet"), read_metadata(tmp_path / "b.parquet")
    assert a["study"] == {"seed": 7, "results": "r"} and a["estimator"] == "t"
    assert "study" not in b and {k: v for k, v in a.items() if k != "study"} == b

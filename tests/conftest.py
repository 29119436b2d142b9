"""Shared pytest configuration: tests/ importable (for tests/groundtruth.py), one torch thread."""

import os
import sys

import pytest
import torch

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread, as every workflow job uses: on a shared 2-core machine more threads
    only spin against each other, and in-process and subprocess runs then agree bit for bit."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def repo_copy(tmp_path_factory):
    """The workflow and package sources in a scratch folder, so a test may edit them."""
    import shutil

    from workflow_runner import REPO

    dst = tmp_path_factory.mktemp("repo")
    for name in ("Snakefile", "config.yaml", "workflow", "src", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
    return dst


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, repo_copy):
    """`snakemake all` on the tiny config, run once per session; its results folder."""
    from workflow_runner import snakemake

    work = tmp_path_factory.mktemp("tiny")
    snakemake(work, "all", repo=repo_copy)
    return work / "results"

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

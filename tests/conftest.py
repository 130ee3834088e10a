"""Shared fixtures. Real sample data is found through CMPOSE_SAMPLE_DATA (default: ../shared/data
beside the repo root); tests that need it skip when it is absent. Never copy those files here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def sample_data_root() -> Path:
    return Path(os.environ.get("CMPOSE_SAMPLE_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def sample_data() -> Path:
    root = sample_data_root()
    if not (root / "posetrack18-sample").is_dir():
        pytest.skip(f"sample data not found at {root} (set CMPOSE_SAMPLE_DATA)")
    return root


@pytest.fixture(scope="session")
def pt18_sample(sample_data: Path) -> Path:
    return sample_data / "posetrack18-sample"


@pytest.fixture
def one_torch_thread():
    """For tests of tiny models: one intra-op thread is faster than two, and does not thrash when
    the 2-core CI machine is busy (torch's default threads slowed these tests several-fold)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

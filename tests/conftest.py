"""Shared test set-up: two threads (the machine's cores) and the reference trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).parent
#: A copy of ../shared/reference/edgeml_rnnpool_trace.npz, so the suite runs without ../shared.
TRACE = TESTS / "data" / "edgeml_rnnpool_trace.npz"
SHARED_TRACE = TESTS.parent.parent / "shared" / "reference" / "edgeml_rnnpool_trace.npz"

torch.set_num_threads(2)


def one_line_error(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    """Assert a raised error's message is one non-empty line containing every needle."""
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message and message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.fixture(scope="session")
def trace() -> dict[str, np.ndarray]:
    with np.load(TRACE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session, with the machine's two cores."""
    import logging
    import os

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import ray

    # "local": always a fresh instance, never a stray cluster found on the machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()

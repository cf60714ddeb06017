"""Black boxes for the dropped-connection tests (``tests.proto.drop_fixtures:NAME``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def slow_marked(X: np.ndarray) -> np.ndarray:
    """Writes the batch size to FEDZOO_TEST_MARK (the call has reached the black box),
    sleeps FEDZOO_TEST_SLEEP_S seconds (default 30), then returns the coordinate sums."""
    mark = os.environ.get("FEDZOO_TEST_MARK")
    if mark:
        Path(mark).write_text(str(X.shape[0]))
    time.sleep(float(os.environ.get("FEDZOO_TEST_SLEEP_S", "30")))
    return X.sum(axis=1)

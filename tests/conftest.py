import os

import pytest
import torch

# No progress bars in tests: they would only slow the suite and clutter its output.
os.environ.setdefault("ROBUSTLAB_QUIET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): they gain nothing from threads, and on a shared,
    loaded machine OpenMP threads spinning against each other made such modules several times
    slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

import sys
from pathlib import Path

# Let tests import their shared helpers (tests/support.py) by name.
sys.path.insert(0, str(Path(__file__).parent))

from workbook.sandbox import isolation

# Without a working sandbox (macOS, a laptop without bubblewrap) `grade` and `check --dir`
# refuse to run; the suite then grades without it, as --no-sandbox would, and the tests that
# need the sandbox skip. CI installs bubblewrap, so there nothing is waived.
if not isolation().active:
    import os

    os.environ.setdefault("WORKBOOK_NO_SANDBOX", "1")


import pytest

from workbook import grading

_FRESH_GRADING_STATE = dict(grading.state)


@pytest.fixture(autouse=True)
def fresh_grading_state():
    """Each test starts with the kit's per-run state as a new grading process has it: a test
    that used the kit in this process (a hang found, a wait expired) must not change what
    the next one sees, whatever order or worker runs them."""
    grading.state.clear()
    grading.state.update(_FRESH_GRADING_STATE, server_errors=[])
    yield

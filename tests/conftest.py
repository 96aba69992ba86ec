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

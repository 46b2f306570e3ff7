"""The modules GX imports for expectations our suites never use are deferred (gxrun): they
import themselves, whole, on the first use of an attribute."""

import subprocess
import sys

SCRIPT = """
import sys
from sync_pipeline.checks import gxrun

gxrun.new_context()
import great_expectations  # noqa: F401
deferred = [n for n in gxrun.DEFERRED_MODULES if isinstance(sys.modules[n], gxrun._Deferred)]
assert deferred == list(gxrun.DEFERRED_MODULES), deferred

from scipy import stats

assert round(float(stats.norm.cdf(0.0)), 3) == 0.5
assert type(sys.modules["scipy.stats"]).__name__ == "module"  # the real one now
import altair as alt

assert alt.Chart is sys.modules["altair"].Chart
print("ok")
"""


def test_deferred_modules_import_themselves_on_first_use():
    # A process of its own: this one may have imported scipy.stats already.
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

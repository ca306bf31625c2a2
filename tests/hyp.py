"""How hard Hypothesis tries: a quick ``dev`` run by default, the full counts in CI.

``DBP_HYPOTHESIS_PROFILE=ci`` (what ``.ci/run`` sets) runs every property test with the
example count written at its decorator; ``dev``, the default, runs a tenth of it (at least
ten examples), so the README's test command stays short. Hypothesis keeps the examples
that failed before in its database and replays them first under either profile.
"""

from __future__ import annotations

import os

PROFILE = os.environ.get("DBP_HYPOTHESIS_PROFILE", "dev")
if PROFILE not in ("dev", "ci"):
    raise RuntimeError(f"DBP_HYPOTHESIS_PROFILE is 'dev' or 'ci', not {PROFILE!r}")


def examples(n: int) -> int:
    """``n`` examples under the ``ci`` profile, a tenth of it (at least 10) under ``dev``."""
    return n if PROFILE == "ci" else max(10, n // 10)

"""``import dbp`` and ``python -m dbp --help`` load only what the first call needs (issue 25, item 3).

The lists are exact: a module that joins them is a start-up regression to look at (add it here
only if the first call really needs it). Timings are in bench/bench.py, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: What ``import dbp`` loads of dbp: the lazy top level, its errors, and the configuration it reads.
IMPORT_DBP = {"dbp", "dbp._bundled", "dbp._redact", "dbp._types", "dbp._version", "dbp.config", "dbp.engines",
              "dbp.errors"}
#: Neither loads a driver, the migration tool, asyncio, numpy or pandas, nor a TOML parser.
NEVER = ("psycopg", "psycopg_pool", "pymongo", "bson", "yoyo", "asyncio", "numpy", "pandas", "tomllib", "tomli",
         "argparse_manpage", "sqlite3", "ssl")

PROBE = """
import json, sys
before = set(sys.modules)
{code}
loaded = sorted(set(sys.modules) - before)
print(json.dumps(loaded))
"""


def loaded_by(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"})
    found: list[str] = json.loads(out.stdout.splitlines()[-1])
    return found


@pytest.mark.parametrize(("code", "expected"), [
    ("import dbp", IMPORT_DBP),
    ("import runpy\nsys.argv = ['dbp', '--help']\ntry:\n    runpy.run_module('dbp', run_name='__main__')\n"
     "except SystemExit:\n    pass", IMPORT_DBP | {"dbp.cli"}),
], ids=["import dbp", "python -m dbp --help"])
def test_start_up_loads_only_what_the_first_call_needs(code: str, expected: set[str]) -> None:
    loaded = loaded_by(code)
    assert {m for m in loaded if m == "dbp" or m.startswith("dbp.")} == expected
    heavy = [m for m in loaded if m.split(".")[0] in NEVER]
    assert heavy == [], f"start-up loads {heavy}"


def test_the_first_connect_loads_its_engine_and_no_other() -> None:
    """Connecting (here to nothing: ServerUnavailable) loads the engine's own modules and driver: PostgreSQL's,
    not MongoDB's."""
    loaded = loaded_by("import dbp\ntry:\n    dbp.connect({'SQL': {'URL': 'postgresql://u@127.0.0.1:1/x'}}, "
                       "engine='sql')\nexcept dbp.ServerUnavailable:\n    pass")
    roots = {m.split(".")[0] for m in loaded}
    assert "psycopg" in roots and "dbp" in roots
    assert not roots & {"pymongo", "bson", "numpy", "pandas"}, sorted(roots)  # (psycopg itself loads asyncio)
    assert not [m for m in loaded if m.startswith("dbp.mongo")]

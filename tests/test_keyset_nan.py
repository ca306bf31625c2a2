"""Keyset pages over a float column holding NaN and infinities: every row once, in the engine's order.

The engines order NaN differently (PostgreSQL above every number, MongoDB below), and
each engine's keyset condition must follow its own order, or rows after a NaN (or the
NaNs after a number) are never served.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from dbp.pagination import KeysetPage

from .test_query import STAR_SQL, Engines


def rows() -> list[dict[str, Any]]:
    values = [float("nan"), 1.5, None, -math.inf, math.inf, 0.0, -0.0, float("nan"), 2.5, None, 1.5, -7.25]
    return [{"id": i, "n": i % 3, "mag": values[i % len(values)]} for i in range(1, 49)]


@pytest.fixture
def engines(sql_db: Any, mongo_db: Any) -> Engines:
    sql_db.execute(STAR_SQL)
    return Engines(sql_db, mongo_db)


@pytest.fixture(params=["sql", "mongo"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def walk(q: Any, key: str, sort: list[tuple[str, int]], per_page: int) -> list[Any]:
    page = q.paginate({}, per_page=per_page, sort=sort, projection=[key], keyset=True)
    assert isinstance(page, KeysetPage)
    seen = [r[key] for r in page.items]
    while page.next_token is not None:
        page = q.paginate({}, per_page=per_page, sort=sort, projection=[key], after=page.next_token)
        seen += [r[key] for r in page.items]
    return seen


@pytest.mark.parametrize("sort", [[("mag", 1)], [("mag", -1)], [("n", 1), ("mag", -1)], [("mag", -1), ("n", 1)],
                                  [("n", -1), ("mag", 1)]])
@pytest.mark.parametrize("per_page", [1, 3, 7])
def test_a_keyset_walk_over_nan_serves_every_row_once(engines: Engines, engine: str, sort: list[tuple[str, int]],
                                                      per_page: int) -> None:
    engines.load(rows())
    q, key = engines.q[engine], engines.key(engine)
    expected = [r[key] for r in q.find_all({}, sort=sort, projection=[key], paginate=False)]
    assert sorted(expected) == list(range(1, 49))
    assert walk(q, key, sort, per_page) == expected


def test_nan_sorts_in_each_engines_own_order(engines: Engines, engine: str) -> None:
    """Recorded, not unified: PostgreSQL puts NaN above every number, MongoDB below (NULLs first ascending)."""
    engines.load(rows())
    q = engines.q[engine]
    mags = [r["mag"] for r in q.find_all({}, sort=[("mag", 1)], projection=["mag"], paginate=False)]
    present = [m for m in mags if m is not None]
    assert mags[:len(mags) - len(present)] == [None] * (len(mags) - len(present))
    nan_at = [i for i, m in enumerate(present) if math.isnan(m)]
    assert nan_at == (list(range(len(nan_at))) if engine == "mongo"
                      else list(range(len(present) - len(nan_at), len(present))))

"""``unique`` (the de-duplication behind ``$addToSet``) against the quadratic definition it replaced.

It hashes scalars (so a 40,000-item ``$each`` is not 800 million comparisons) and must still
agree with ``same`` everywhere: ``True`` is not ``1``, NaN is one value, an aware datetime is
its instant, containers compare element by element.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dbp.updates import same, unique
from tests.hyp import examples

_ZONE = dt.timezone(dt.timedelta(hours=1))
_scalars = st.one_of(
    st.booleans(), st.integers(-3, 3), st.floats(allow_infinity=True), st.none(), st.text(max_size=2),
    st.sampled_from([Decimal("1"), Decimal("1.0"), Decimal("NaN"), dt.datetime(2020, 1, 1, 1, tzinfo=_ZONE),
                     dt.datetime(2020, 1, 1, 0, tzinfo=dt.timezone.utc), dt.datetime(2020, 1, 1, 0)]),
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=2), inner, max_size=2), max_leaves=6)


def _by_definition(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not any(same(item, seen) for seen in out):
            out.append(item)
    return out


@settings(max_examples=examples(500), deadline=None)
@given(st.lists(_values, max_size=10))
def test_unique_keeps_what_the_definition_keeps(items: list[Any]) -> None:
    got, wanted = unique(items), _by_definition(items)
    assert len(got) == len(wanted) and all(a is b for a, b in zip(got, wanted))


def test_unique_of_many_scalars() -> None:
    items = [*range(20_000), *(float(i) for i in range(20_000)), True, 1, float("nan"), float("nan")]
    got = unique(items)
    assert len(got) == 20_002 and got[:20_000] == list(range(20_000))
    assert got[20_000] is True and got[20_001] is items[-2]

"""Positions on the sky: ``$cone`` and crossmatch, shared by both engines.

A cone is ``{"$cone": {"ra": deg, "dec": deg, "radius": arcsec}}``. Both
engines narrow it with an index (a dec band and ra ranges, q3c, or a 2dsphere
cap slightly larger than the cone) and then keep exactly the rows whose
great-circle distance, :func:`separation` (the atan2 form, accurate at every
separation), is at most the radius. ``$distance`` in a sort or a projection is
that distance in arcseconds (returned as the field ``distance``).

Units are converted here only: :func:`arcsec_to_radians` (Mongo's
``$centerSphere``) and :func:`arcsec_to_degrees` (the dec band, q3c).
"""

from __future__ import annotations

import bisect
import decimal
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from dbp._values import plain
from dbp.errors import FilterError

__all__ = ["DISTANCE", "DISTANCE_FIELD", "MAX_RADIUS", "Box", "Cone", "Match", "Position", "arcsec_to_degrees",
           "arcsec_to_radians", "box", "cone_for", "cones", "parse_cone", "parse_positions", "separation"]

#: The sort key / projection name of the distance to the cone's centre.
DISTANCE = "$distance"
#: The field it is returned as.
DISTANCE_FIELD = "distance"
#: The largest radius, in arcseconds (90°).
MAX_RADIUS = 90.0 * 3600.0
_ARCSEC_PER_DEGREE = 3600.0
#: Candidate searches (q3c, $centerSphere) use a radius this much larger; the exact distance decides.
SLACK = 1e-6


def arcsec_to_degrees(arcsec: float) -> float:
    return arcsec / _ARCSEC_PER_DEGREE


def arcsec_to_radians(arcsec: float) -> float:
    return math.radians(arcsec / _ARCSEC_PER_DEGREE)


def separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """The great-circle distance in arcseconds between two positions in degrees (Vincenty's atan2 form)."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dl = math.radians(ra2) - math.radians(ra1)
    a = math.cos(p2) * math.sin(dl)
    b = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    den = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(math.sqrt(a * a + b * b), den)) * _ARCSEC_PER_DEGREE


@dataclass(frozen=True)
class Cone:
    """``ra``, ``dec`` in degrees (ra in [0, 360)), ``radius`` in arcseconds."""

    ra: float
    dec: float
    radius: float

    @property
    def trig(self) -> tuple[float, float, float]:
        """The centre as the distance formula takes it: ra in radians, cos(dec), sin(dec)."""
        d = math.radians(self.dec)
        return math.radians(self.ra), math.cos(d), math.sin(d)


@dataclass(frozen=True)
class Position:
    """Where a table keeps positions (``ra``/``dec`` columns in degrees), or a collection (a GeoJSON point).

    For a collection, ``ra``/``dec`` are unused; ``point`` is the GeoJSON field,
    whose longitude is ra + ``ra_offset`` wrapped into [-180, 180).
    """

    ra: str = ""
    dec: str = ""
    point: str = ""
    ra_offset: float = 0.0

    def longitude(self, ra: float) -> float:
        lon = (ra + self.ra_offset + 180.0) % 360.0 - 180.0
        return lon if lon < 180.0 else -180.0


class Box(NamedTuple):
    """A cone's bounding box: a dec band and up to two ra ranges (none: every ra, near a pole)."""

    dec_min: float
    dec_max: float
    ra_ranges: tuple[tuple[float, float], ...]


def box(cone: Cone) -> Box:
    """The smallest dec band and ra range(s) that hold the cone, with a little slack; ra wraps at 0/360."""
    r = arcsec_to_degrees(cone.radius) * (1 + SLACK) + 1e-9
    lo, hi = cone.dec - r, cone.dec + r
    if hi >= 90.0 or lo <= -90.0:  # the cone holds a pole: every ra
        return Box(max(lo, -90.0), min(hi, 90.0), ())
    # the widest ra offset of a small circle of radius r centred at dec
    half = math.degrees(math.asin(min(1.0, math.sin(math.radians(r)) / math.cos(math.radians(cone.dec)))))
    half = half * (1 + SLACK) + 1e-9
    if half >= 180.0:
        return Box(lo, hi, ())
    start, end = cone.ra - half, cone.ra + half
    if start < 0.0:
        return Box(lo, hi, ((0.0, end), (start + 360.0, 360.0)))
    if end > 360.0:
        return Box(lo, hi, ((start, 360.0), (0.0, end - 360.0)))
    return Box(lo, hi, ((start, end),))


def _number(value: Any, where: str) -> float:
    value = plain(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        raise FilterError(f"{where} is a number, not {type(value).__name__}")
    if isinstance(value, decimal.Decimal) and not value.is_finite():
        raise FilterError(f"{where} is a finite number, not {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise FilterError(f"{where} is a finite number, not an integer beyond float range") from None
    if not math.isfinite(number):
        raise FilterError(f"{where} is a finite number, not {value!r}")
    return number


def _centre(ra: Any, dec: Any, where: str) -> tuple[float, float]:
    ra_f, dec_f = _number(ra, f"{where} ra"), _number(dec, f"{where} dec")
    if not 0.0 <= ra_f <= 360.0:
        raise FilterError(f"{where} ra is in degrees from 0 to 360, not {ra_f!r}")
    if not -90.0 <= dec_f <= 90.0:
        raise FilterError(f"{where} dec is in degrees from -90 to 90, not {dec_f!r}")
    return ra_f % 360.0, dec_f


def parse_radius(value: Any, where: str) -> float:
    radius = _number(value, f"{where} radius")
    if not 0.0 < radius <= MAX_RADIUS:
        raise FilterError(f"{where} radius is in arcseconds, above 0 and at most {MAX_RADIUS:.0f} (90°), "
                          f"not {radius!r}")
    return radius


def parse_cone(spec: Any) -> Cone:
    """``{"ra": deg, "dec": deg, "radius": arcsec}`` as a :class:`Cone`; FilterError naming the problem."""
    spec = plain(spec)
    if not isinstance(spec, Mapping) or set(spec) != {"ra", "dec", "radius"}:
        raise FilterError('$cone takes {"ra": degrees, "dec": degrees, "radius": arcseconds} and nothing else')
    ra, dec = _centre(spec["ra"], spec["dec"], "$cone")
    return Cone(ra, dec, parse_radius(spec["radius"], "$cone"))


def cones(node: Any) -> Iterator[Cone]:
    """Every cone in a filter tree."""
    if isinstance(node, Cone):
        yield node
    for child in getattr(node, "items", ()):
        yield from cones(child)
    inner = getattr(node, "item", None)
    if inner is not None:
        yield from cones(inner)


def cone_for(node: Any, sort: Sequence[tuple[Any, ...]], projection: Optional[Sequence[str]]) -> Optional[Cone]:
    """The cone ``$distance`` measures from, if the sort (field first in each entry) or projection names it;
    FilterError if ambiguous."""
    if DISTANCE not in [entry[0] for entry in sort] + list(projection or ()):
        return None
    found = list(cones(node))
    if len(found) != 1:
        raise FilterError(f"{DISTANCE} needs exactly one $cone in the filter, not {len(found)}")
    if projection is not None and DISTANCE_FIELD in projection:
        raise FilterError(f"the projection names both {DISTANCE_FIELD!r} and {DISTANCE} (returned as "
                          f"{DISTANCE_FIELD!r})")
    return found[0]


class Match(NamedTuple):
    """One crossmatch result: the caller's ``id``, the matched row, the distance in arcseconds."""

    id: Any
    row: dict[str, Any]
    distance: float


def parse_positions(positions: Any) -> list[tuple[Any, float, float]]:
    """``[(id, ra, dec), ...]`` checked; FilterError naming the first bad one."""
    if isinstance(positions, (str, bytes, Mapping)) or not isinstance(positions, Sequence):
        raise FilterError(f"crossmatch takes a list of (id, ra, dec), not {type(positions).__name__}")
    out = []
    for i, item in enumerate(positions):
        if isinstance(item, (str, bytes, Mapping)) or not isinstance(item, Sequence) or len(item) != 3:
            raise FilterError(f"crossmatch: positions[{i}] is not an (id, ra, dec) triple")
        ra, dec = _centre(item[1], item[2], f"crossmatch: positions[{i}]")
        out.append((item[0], ra, dec))
    return out


def nearest_first(found: dict[int, list[tuple[float, int, dict[str, Any]]]], ids: Sequence[Any],
                  nearest: bool) -> list[Match]:
    """Matches in the positions' order, each position's nearest first (ties in the order found)."""
    out: list[Match] = []
    for i in sorted(found):
        rows = sorted(found[i], key=lambda m: (m[0], m[1]))
        for distance, _, row in rows[:1] if nearest else rows:
            out.append(Match(ids[i], row, distance))
    return out


class DecIndex:
    """Positions sorted by dec: which of them may lie within ``radius`` of a point."""

    def __init__(self, positions: Sequence[tuple[Any, float, float]], radius: float) -> None:
        self.order = sorted(range(len(positions)), key=lambda i: positions[i][2])
        self.decs = [positions[i][2] for i in self.order]
        self.positions = positions
        self.reach = arcsec_to_degrees(radius) * (1 + SLACK) + 1e-9

    def near(self, dec: float) -> Iterator[int]:
        start = bisect.bisect_left(self.decs, dec - self.reach)
        end = bisect.bisect_right(self.decs, dec + self.reach)
        for k in range(start, end):
            yield self.order[k]

"""Document shapes of the ALeRCE collections, as plain functions.

Call them on your fields before inserting; each returns a new dict:

>>> object_document({"aid": "AL1", "meanra": 190.0, "meandec": -10.0})["loc"]
{'type': 'Point', 'coordinates': [10.0, -10.0]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "detection_document",
    "forced_photometry_document",
    "non_detection_document",
    "object_document",
    "taxonomy_document",
]

Document = dict[str, Any]

OBJECT_FIELDS = (
    "_id", "oid", "tid", "sid", "corrected", "stellar", "firstmjd", "lastmjd", "ndet",
    "meanra", "sigmara", "meandec", "sigmadec", "loc", "magstats", "features", "probabilities", "xmatch",
)
DETECTION_FIELDS = (
    "_id", "tid", "sid", "aid", "oid", "mjd", "fid", "ra", "e_ra", "dec", "e_dec", "mag", "e_mag",
    "mag_corr", "e_mag_corr", "e_mag_corr_ext", "isdiffpos", "corrected", "dubious", "parent_candid",
    "has_stamp",
)
NON_DETECTION_FIELDS = ("_id", "aid", "tid", "sid", "oid", "mjd", "fid", "diffmaglim")
TAXONOMY_FIELDS = ("_id", "classifier_name", "classifier_version", "classes")

_OBJECT_DEFAULTS: Mapping[str, Any] = {"magstats": list, "features": dict, "probabilities": list, "xmatch": list}


def loc(meanra: float, meandec: float) -> Document:
    """The GeoJSON point of an object: longitude is ``meanra - 180``."""
    return {"type": "Point", "coordinates": [meanra - 180, meandec]}


def object_document(fields: Mapping[str, Any]) -> Document:
    """An ``object`` document: ``_id`` from ``aid``, ``loc`` from ``meanra``/``meandec``, list defaults."""
    doc = dict(fields)
    if "aid" in doc:
        doc["_id"] = doc.pop("aid")
    if "_id" not in doc:
        raise ValueError("an object needs aid (or _id)")
    unknown = sorted(set(doc) - set(OBJECT_FIELDS))
    if unknown:
        raise ValueError(f"unknown object field(s): {', '.join(unknown)}")
    if doc.get("meanra") is not None and doc.get("meandec") is not None:
        doc["loc"] = loc(doc["meanra"], doc["meandec"])
    for name, default in _OBJECT_DEFAULTS.items():
        if doc.get(name) is None:
            doc[name] = default()
    return doc


def _with_extra_fields(fields: Mapping[str, Any], known: tuple[str, ...]) -> Document:
    doc = dict(fields)
    candid = doc.pop("candid", None)
    if candid is not None:
        doc.setdefault("_id", candid)
    extra = dict(doc.pop("extra_fields", None) or {})
    for key in [k for k in doc if k not in known]:
        extra[key] = doc.pop(key)
    doc["extra_fields"] = extra
    return doc


def detection_document(fields: Mapping[str, Any]) -> Document:
    """A ``detection`` document: ``_id`` from ``candid``; every other unknown key goes to ``extra_fields``."""
    doc = _with_extra_fields(fields, DETECTION_FIELDS)
    if "_id" not in doc:
        raise ValueError("a detection needs candid (or _id)")
    return doc


def forced_photometry_document(fields: Mapping[str, Any]) -> Document:
    """A ``forced_photometry`` document: shaped like a detection."""
    doc = _with_extra_fields(fields, DETECTION_FIELDS)
    if "_id" not in doc:
        raise ValueError("a forced photometry needs candid (or _id)")
    return doc


def non_detection_document(fields: Mapping[str, Any]) -> Document:
    """A ``non_detection`` document: ``_id`` from ``candid`` where given, unknown keys in ``extra_fields``."""
    return _with_extra_fields(fields, NON_DETECTION_FIELDS)


def taxonomy_document(fields: Mapping[str, Any]) -> Document:
    doc = dict(fields)
    unknown = sorted(set(doc) - set(TAXONOMY_FIELDS))
    if unknown:
        raise ValueError(f"unknown taxonomy field(s): {', '.join(unknown)}")
    doc["classes"] = list(doc.get("classes") or [])
    return doc

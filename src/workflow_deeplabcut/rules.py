"""Value rules derived from the table definitions themselves.

A user's text (a CSV cell, a YAML scalar, a ``NAME=VALUE`` on the command line) is checked and
converted by the rule of the attribute it fills, read from the table's heading: integer width,
``varchar`` length, ``enum`` values, date and time formats. So a check never repeats a table's
enum or length, and a value the database would refuse (or silently change) is refused first,
with a message that names it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

#: Integer ranges by core type (and by the native names backends report).
_INT_BITS = {
    "int8": 8,
    "tinyint": 8,
    "int16": 16,
    "smallint": 16,
    "int32": 32,
    "int": 32,
    "integer": 32,
    "mediumint": 32,
    "int64": 64,
    "bigint": 64,
}
_FLOATS = {"float32", "float64", "float", "double", "double precision", "real", "decimal", "numeric"}


@dataclass(frozen=True)
class Rule:
    """How to check and convert a text value for one attribute."""

    name: str
    kind: str  # int, float, bool, date, datetime, text, enum, other
    length: int | None = None  # text: maximum characters
    bits: int | None = None  # int: width
    choices: tuple[str, ...] = ()  # enum
    optional: bool = False  # has a default or is nullable

    def convert(self, raw):
        """Return ``raw`` as this attribute's Python value.

        Raises
        ------
        ValueError
            With the reason, e.g. ``'abc' is not an integer``.
        """
        if self.kind == "int":
            return _to_int(raw, self.bits)
        if self.kind == "float":
            return _to_float(raw)
        if self.kind == "bool":
            return _to_bool(raw)
        if self.kind == "date":
            return to_date(raw)
        if self.kind == "datetime":
            return to_datetime(raw)
        if self.kind == "enum":
            text = check_text(str(raw))
            if text not in self.choices:
                raise ValueError(f"{raw!r} is not one of {', '.join(self.choices)}")
            return text
        if self.kind == "text":
            if not isinstance(raw, str):
                raise ValueError(f"{raw!r} is not text")
            return check_text(raw, self.length)
        return raw


def _to_int(raw, bits: int | None) -> int:
    if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
        raise ValueError(f"{raw!r} is not an integer")
    try:
        value = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not an integer") from None
    if bits:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range ({low} to {high})")
    return value


def _to_float(raw) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def _to_bool(raw) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{raw!r} is not true or false")


def check_text(text: str, length: int | None = None) -> str:
    """Refuse text the database would refuse or change: NUL bytes, invalid Unicode, too long."""
    if "\x00" in text:
        raise ValueError(f"{text!r} contains a NUL byte")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{text!r} is not valid Unicode") from None
    if length is not None and len(text) > length:
        raise ValueError(f"{text[:40]!r}... is {len(text)} characters long; at most {length} fit")
    return text


_OFFSET = re.compile(r"(Z|[+-]\d\d:?\d\d)$")


def to_datetime(raw) -> dt.datetime:
    """Parse ``YYYY-MM-DD HH:MM:SS``: whole seconds, no time zone (sessions are local time).

    Raises
    ------
    ValueError
        For another format, a time zone (``Z``, ``+02:00``) or fractions of a second, which the
        database would drop or shift without a word.
    """
    if isinstance(raw, dt.datetime):
        value = raw
    else:
        text = str(raw).strip()
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise ValueError(f"{raw!r} is not a date and time YYYY-MM-DD HH:MM:SS") from None
        if len(text) <= 10:
            raise ValueError(f"{raw!r} is not a date and time YYYY-MM-DD HH:MM:SS")
    if value.tzinfo is not None or _OFFSET.search(str(raw).strip()):
        raise ValueError(
            f"{raw!r} has a time zone; give the local time of the lab without an offset (YYYY-MM-DD HH:MM:SS)"
        )
    if value.microsecond:
        raise ValueError(f"{raw!r} has fractions of a second, which are not stored; give whole seconds")
    return value


def to_date(raw) -> dt.date:
    """Parse ``YYYY-MM-DD``."""
    if isinstance(raw, dt.datetime):
        raise ValueError(f"{raw!r} is not a date YYYY-MM-DD")
    if isinstance(raw, dt.date):
        return raw
    try:
        return dt.date.fromisoformat(str(raw).strip())
    except ValueError:
        raise ValueError(f"{raw!r} is not a date YYYY-MM-DD") from None


def _declared_type(table, name: str) -> str:
    """Return the attribute's declared (core) type, following foreign keys to its origin."""
    attr = table.heading.attributes[name]
    if attr.original_type:
        return attr.original_type
    if attr.lineage:
        origin = _origin_table(table, attr.lineage)
        if origin is not None and name in origin.heading.attributes:
            declared = origin.heading.attributes[name].original_type
            if declared:
                return declared
    return attr.type


def _origin_table(table, lineage: str):
    """Find the table a lineage ``schema.table.attribute`` names, among the pipeline's tables."""
    from .pipeline import tables

    database, table_name, _ = lineage.rsplit(".", 2)
    for candidate in tables().values():
        if candidate.database == database and candidate.table_name == table_name:
            return candidate
    return None


def rule_for(table, name: str) -> Rule:
    """Return the :class:`Rule` of one attribute of a table (or query expression)."""
    attr = table.heading.attributes[name]
    declared = _declared_type(table, name).strip()
    lowered = declared.lower()
    optional = attr.nullable or attr.default is not None
    base = lowered.split("(")[0].strip()
    if lowered.startswith("enum"):
        return Rule(name, "enum", choices=tuple(re.findall(r"'((?:[^']|'')*)'", declared)), optional=optional)
    if base in _INT_BITS:
        return Rule(name, "int", bits=_INT_BITS[base], optional=optional)
    if base in _FLOATS:
        return Rule(name, "float", optional=optional)
    if base in ("bool", "boolean"):
        return Rule(name, "bool", optional=optional)
    if base == "date":
        return Rule(name, "date", optional=optional)
    if base in ("datetime", "timestamp", "timestamp without time zone"):
        return Rule(name, "datetime", optional=optional)
    if base in ("varchar", "char", "character varying", "character"):
        match = re.search(r"\((\d+)\)", declared)
        return Rule(name, "text", length=int(match.group(1)) if match else None, optional=optional)
    return Rule(name, "other", optional=optional)


def check_key(table, raw: dict) -> dict:
    """Check ``NAME=VALUE`` pairs against a table's attributes and convert the values.

    Raises
    ------
    InputError
        For an attribute the table does not have (listing those it has) or a bad value.
    """
    from .errors import InputError

    names = table.heading.names
    typed = {}
    for name, value in raw.items():
        if name not in names:
            raise InputError(
                f"{table.__name__ if hasattr(table, '__name__') else 'The table'} has no attribute "
                f"{name!r}; use some of {names}."
            )
        try:
            typed[name] = rule_for(table, name).convert(value)
        except ValueError as err:
            raise InputError(f"{name}={value!r}: {err}.") from None
    return typed


__all__ = ["Rule", "rule_for", "check_key", "check_text", "to_datetime", "to_date"]

"""Hashed, idempotent parameter sets, shared by every ``*ParamSet`` lookup table."""

from __future__ import annotations

import hashlib
import json


def params_hash(params: dict) -> str:
    """Return the MD5 of a parameter dict's canonical JSON (key order does not matter)."""
    return hashlib.md5(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def insert_hashed(table, attrs: tuple[str, str, str, str], desc: str, params: dict, idx: int | None) -> int:
    """Insert a parameter set unless the same parameters exist already.

    Parameters
    ----------
    table : datajoint table class
        A lookup with an integer index, a description, a ``char(32)`` hash under a unique
        index and a blob of params.
    attrs : tuple of str
        The names of those four attributes: ``(index, description, hash, params)``.
    desc : str
        Description.
    params : dict
        Already checked and canonical parameters.
    idx : int, optional
        Index to use; default one more than the largest.

    Returns
    -------
    int
        The index of the (new or existing) parameter set.

    Raises
    ------
    ValueError
        When the same params exist under another index, or the index holds other params.
    """
    idx_attr, desc_attr, hash_attr, params_attr = attrs
    digest = params_hash(params)
    existing = (table & {hash_attr: digest}).keys()
    if existing:
        found = existing[0][idx_attr]
        if idx is None or idx == found:
            return found
        raise ValueError(
            f"These params already exist as {idx_attr} {found}; reuse it instead of inserting them "
            f"again as {idx}."
        )
    if idx is None:
        idx = max((k[idx_attr] for k in table.keys()), default=-1) + 1
    elif table & {idx_attr: idx}:
        raise ValueError(
            f"{idx_attr} {idx} already holds different params; choose another index or leave it out "
            "to get the next free one."
        )
    table.insert1({idx_attr: idx, desc_attr: desc, hash_attr: digest, params_attr: params})
    return idx

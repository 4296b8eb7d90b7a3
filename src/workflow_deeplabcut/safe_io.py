"""Read files that users supply without running code from them.

Three formats in a DeepLabCut project can carry code: Python pickles (``*_meta.pickle``,
``Documentation_data-*.pickle``), pandas' HDF5 files (PyTables unpickles string attributes
that end in ``.`` and every ``ObjectAtom`` row, so ``pandas.read_hdf`` runs whatever a crafted
file holds) and PyTorch snapshots (``torch.load`` without ``weights_only``). The rule of this
package: **nothing a user supplied is unpickled by an unrestricted unpickler**.

- :func:`load_pickle` unpickles with an allow-list: plain containers, strings, numbers and
  numpy arrays/scalars; names from DeepLabCut (its enums) become inert :class:`Opaque` values;
  any other global (a function, a class) is refused before it is looked up.
- :func:`read_pandas_hdf` reads pandas' ``fixed`` and ``table`` HDF5 layouts with h5py (which never
  unpickles), after :func:`scan_hdf` has checked every attribute and object row of the file.
- :func:`check_hdf` and :func:`check_snapshot` vet files that DeepLabCut itself will open
  (labeled data, training-set pickles, snapshots), before DeepLabCut is called.

Pure functions, no database.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UnsafeFileError

#: Globals a pickle may name: numpy's array and scalar reconstruction, paths; nothing that runs code.
SAFE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("pathlib", "Path"),
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "PureWindowsPath"),
    }
)


#: Modules whose names a pickle may mention (DeepLabCut writes its enums, e.g. ``NetType``,
#: into ``*_meta.pickle``): they are read as inert :class:`Opaque` values, never imported or called.
OPAQUE_MODULES = ("deeplabcut.",)


class Opaque:
    """An object a pickle named, kept as its name and arguments; no code of it ever runs."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname}{self.args!r}>"


def _opaque(module: str, name: str) -> type:
    return type(name, (Opaque,), {"qualname": f"{module}.{name}"})


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, *, source: str, allowed: frozenset, **kwargs):
        super().__init__(file, **kwargs)
        self._source = source
        self._allowed = allowed

    def find_class(self, module, name):
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        if self._allowed and module.startswith(OPAQUE_MODULES):
            return _opaque(module, name)
        raise UnsafeFileError(
            f"{self._source} holds a pickled reference to {module}.{name}; reading it would run "
            "code, so it is refused. Only plain data (containers, strings, numbers, numpy arrays) "
            "is accepted: re-create the file with the tool that made it, from a trusted copy."
        )

    def persistent_load(self, pid):
        raise UnsafeFileError(f"{self._source} holds a pickled persistent reference; it is refused.")


def loads_restricted(data: bytes, source: str, *, allow_numpy: bool = True, encoding: str = "ASCII"):
    """Unpickle bytes with the allow-list (see :data:`SAFE_GLOBALS`).

    Parameters
    ----------
    data : bytes
        The pickle.
    source : str
        What the bytes are (named in the error).
    allow_numpy : bool
        Accept numpy arrays and scalars; otherwise only builtin containers and values.
    encoding : str
        How Python 2 strings are decoded (as :func:`pickle.loads`).

    Raises
    ------
    UnsafeFileError
        If the pickle names any other global.
    """
    allowed = SAFE_GLOBALS if allow_numpy else frozenset()
    return _RestrictedUnpickler(io.BytesIO(data), source=source, allowed=allowed, encoding=encoding).load()


def load_pickle(path: str | Path, *, allow_numpy: bool = True):
    """Read a pickle file that a user supplied, refusing anything that would run code.

    Raises
    ------
    UnsafeFileError
        If it names a global outside the allow-list, or is not a readable pickle.
    """
    path = Path(path)
    try:
        return loads_restricted(path.read_bytes(), str(path), allow_numpy=allow_numpy)
    except UnsafeFileError:
        raise
    except Exception as err:  # truncated or not a pickle: many exception types
        raise UnsafeFileError(f"{path} is not a readable pickle ({type(err).__name__}: {err}).") from None


# ------------------------------------------------------------------------------------ HDF5
def _maybe_pickled(value) -> bool:
    """PyTables' own test: a bytes attribute ending in '.' is unpickled when read."""
    return isinstance(value, bytes | np.bytes_) and len(value) > 0 and bytes(value).endswith(b".")


def _attr_value(value, source: str):
    """Decode one attribute as PyTables would, but through the restricted unpickler."""
    if _maybe_pickled(value) and bytes(value) not in (b"0", b"0."):
        for encoding in ("ASCII", "latin1"):
            try:
                return loads_restricted(bytes(value), source, encoding=encoding)
            except UnsafeFileError:
                raise
            except Exception:  # noqa: S112 - not a pickle in this encoding: PyTables keeps the raw value
                continue
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def scan_hdf(handle, path: str | Path) -> None:
    """Check every attribute and object row of an open h5py file for code (raise if found).

    A string attribute that PyTables would unpickle must hold plain data; an ``ObjectAtom``
    array (pickled rows) must hold only plain data too.
    """
    import h5py

    def check_attrs(obj, name):
        for attr, value in obj.attrs.items():
            _attr_value(value, f"{path} (attribute {attr!r} of /{name})")

    def visit(name, obj):
        check_attrs(obj, name)
        if isinstance(obj, h5py.Dataset) and obj.attrs.get("PSEUDOATOM") in (b"object", "object"):
            for i, row in enumerate(obj):
                loads_restricted(np.asarray(row, dtype=np.uint8).tobytes(), f"{path} (/{name}, row {i})")

    check_attrs(handle, "")
    handle.visititems(visit)


def check_hdf(path: str | Path) -> None:
    """Refuse an HDF5 file that ``pandas.read_hdf`` would run code from.

    Raises
    ------
    UnsafeFileError
        Naming the file and the offending attribute or array.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            scan_hdf(handle, path)
    except UnsafeFileError:
        raise
    except OSError as err:
        raise UnsafeFileError(f"{path} is not a readable HDF5 file ({err}).") from None


def read_pandas_hdf(path: str | Path, key: str | None = None) -> pd.DataFrame:
    """Read a DataFrame that pandas wrote to HDF5 (``fixed`` or ``table``), without unpickling.

    The whole file is scanned first (:func:`scan_hdf`); then the frame's numeric blocks,
    index and column labels are read with h5py and put together as pandas would.

    Parameters
    ----------
    path : str or Path
        The ``.h5`` file.
    key : str, optional
        The frame's key; default the only one, or ``df_with_missing`` (DeepLabCut's).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    UnsafeFileError
        If the file holds pickled code, is not HDF5, or holds a layout this reader does not
        know (e.g. object-typed values), with the reason.
    """
    path = Path(path)
    with _open_hdf(path) as handle:
        group, kind = _frame_group(handle, path, key)
        try:
            if kind == "frame":
                return _read_fixed(group, path)
            if kind == "frame_table":
                return _read_table(group, path)
        except (KeyError, ValueError, TypeError, IndexError) as err:
            raise UnsafeFileError(
                f"{path}: unexpected pandas HDF5 layout ({type(err).__name__}: {err})."
            ) from None
    raise UnsafeFileError(f"{path}: pandas layout {kind!r} is not supported (expected a DataFrame).")


def _open_hdf(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise UnsafeFileError(f"{path} is not a readable HDF5 file ({err}).") from None


def _frame_group(handle, path: Path, key: str | None):
    """Scan the open file; return the pandas frame's group (``key``, or the only one) and its kind."""
    import h5py

    scan_hdf(handle, path)
    frames = [k for k, g in handle.items() if isinstance(g, h5py.Group) and "pandas_type" in g.attrs]
    if key is None:
        key = "df_with_missing" if "df_with_missing" in frames else (frames[0] if len(frames) == 1 else None)
    if key is None or key not in frames:
        raise UnsafeFileError(
            f"{path} holds pandas frames {frames}; expected {'one' if key is None else repr(key)}."
        )
    group = handle[key]
    return group, _attr_value(group.attrs["pandas_type"], str(path))


@dataclass(frozen=True)
class ValuesBlock:
    """Where a pandas frame's numbers lie in its HDF5 file: one plain block of bytes."""

    columns: pd.Index
    nrows: int
    dtype: np.dtype
    offset: int  # byte offset of the (nrows, ncolumns) C-order values in the file
    nbytes: int


def pandas_hdf_block(path: str | Path, key: str | None = None) -> ValuesBlock | None:
    """Locate the values of a ``fixed``-format frame with one numeric block stored plainly.

    The file is scanned as by :func:`read_pandas_hdf`; no value is read. Returns None when the
    values are not one contiguous, uncompressed floating-point block in the frame's column
    order (a ``table`` frame, several blocks, chunked storage): read the frame then.

    Raises
    ------
    UnsafeFileError
        As :func:`read_pandas_hdf`.
    """
    path = Path(path)
    with _open_hdf(path) as handle:
        group, kind = _frame_group(handle, path, key)
        if kind != "frame":
            return None
        try:
            attrs = _attrs(group, path)
            if int(attrs.get("nblocks", 0)) != 1:
                return None
            values = group["block0_values"]
            columns = _axis(group, "axis0", path)
            if (
                values.ndim != 2
                or values.dtype.kind != "f"
                or values.chunks is not None
                or _attrs(values, path).get("PSEUDOATOM") == "object"
                or values.shape[1] != len(columns)
                or not columns.equals(_axis(group, "block0_items", path))
            ):
                return None
            offset = values.id.get_offset()
            nbytes = values.size * values.dtype.itemsize
            if offset is None or values.id.get_storage_size() != nbytes:
                return None
        except (KeyError, ValueError, TypeError, IndexError) as err:
            raise UnsafeFileError(
                f"{path}: unexpected pandas HDF5 layout ({type(err).__name__}: {err})."
            ) from None
        return ValuesBlock(columns, int(values.shape[0]), values.dtype, int(offset), int(nbytes))


def read_pandas_table_chunks(path: str | Path, key: str | None = None, rows: int = 16384):
    """Read a ``table``-format frame with one numeric values block in chunks, without pandas.

    The file is scanned as by :func:`read_pandas_hdf`. A generator: it first yields the
    frame's columns (in stored order) and its row count, then ``(index, values)`` for each
    chunk of ``rows`` rows (``values`` 2-D, stored order). It yields nothing when the frame
    is not one such table: read it with :func:`read_pandas_hdf` then. Only one chunk is in
    memory at a time, so a caller copying chunks into its own array holds about that array.

    Raises
    ------
    UnsafeFileError
        As :func:`read_pandas_hdf`.
    """
    path = Path(path)
    with _open_hdf(path) as handle:
        group, kind = _frame_group(handle, path, key)
        if kind != "frame_table":
            return
        try:
            attrs = _attrs(group, path)
            blocks = attrs["values_cols"]
            index_cols = attrs["index_cols"]
            if attrs.get("data_columns") or len(blocks) != 1 or len(index_cols) != 1:
                return
            table = group["table"]
            field, index_field = blocks[0], index_cols[0][1]
            dtype = table.dtype[field]
            if dtype.base.kind not in "fiub" or table.dtype[index_field].kind not in "iu":
                return
            labels = _attrs(table, path)[f"{field}_kind"]
            info = attrs.get("info") or {}
            names = (info.get(1, {}) if isinstance(info, dict) else {}).get("names")
            if labels and isinstance(labels[0], tuple):
                columns = pd.MultiIndex.from_tuples(labels, names=names)
            else:
                columns = pd.Index(labels)
            n = int(table.shape[0])
            yield columns, n
            for start in range(0, n, rows):
                chunk = table[start : start + rows]
                yield chunk[index_field], chunk[field].reshape(len(chunk), -1)
        except (KeyError, ValueError, TypeError, IndexError) as err:
            raise UnsafeFileError(
                f"{path}: unexpected pandas HDF5 layout ({type(err).__name__}: {err})."
            ) from None


def _attrs(obj, path) -> dict:
    return {k: _attr_value(v, f"{path} (/{obj.name})") for k, v in obj.attrs.items()}


def _labels(dataset, path) -> np.ndarray:
    """Decode one label array (index values) by its pandas ``kind``."""
    attrs = _attrs(dataset, path)
    values = dataset[()]
    if attrs.get("PSEUDOATOM") == "object" or values.dtype == object:
        raise UnsafeFileError(f"{path}: labels of /{dataset.name} are pickled objects; not supported.")
    if attrs.get("kind") == "string" or values.dtype.kind == "S":
        return np.array([v.decode("utf-8") for v in values], dtype=object)
    if attrs.get("kind") not in (None, "integer", "float"):
        raise UnsafeFileError(f"{path}: labels of kind {attrs.get('kind')!r} are not supported.")
    return values


def _axis(group, prefix: str, path) -> pd.Index:
    """Rebuild a pandas (Multi)Index stored under ``prefix`` in the fixed layout."""
    attrs = _attrs(group, path)
    if attrs.get(f"{prefix}_variety") == "multi":
        n = int(attrs[f"{prefix}_nlevels"])
        levels, codes, names = [], [], []
        for i in range(n):
            level = group[f"{prefix}_level{i}"]
            levels.append(_labels(level, path))
            codes.append(group[f"{prefix}_label{i}"][()])
            name = _attrs(level, path).get("name")
            names.append(None if name in (None, "N.") else name)
        return pd.MultiIndex(levels=levels, codes=codes, names=names)
    dataset = group[prefix]
    name = _attrs(dataset, path).get("name")
    return pd.Index(_labels(dataset, path), name=None if name in (None, "N.") else name)


def _read_fixed(group, path) -> pd.DataFrame:
    attrs = _attrs(group, path)
    columns = _axis(group, "axis0", path)
    index = _axis(group, "axis1", path)
    blocks = []
    for i in range(int(attrs["nblocks"])):
        values = group[f"block{i}_values"]
        if _attrs(values, path).get("PSEUDOATOM") == "object" or values.dtype.kind not in "fiub":
            raise UnsafeFileError(f"{path}: block {i} holds {values.dtype} values; only numbers are read.")
        blocks.append(pd.DataFrame(values[()], index=index, columns=_axis(group, f"block{i}_items", path)))
    frame = pd.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return frame.reindex(columns=columns)


def _read_table(group, path) -> pd.DataFrame:
    attrs = _attrs(group, path)
    if attrs.get("data_columns"):
        raise UnsafeFileError(f"{path}: pandas tables with data columns are not supported.")
    table = group["table"]
    data = table[()]
    index_cols = attrs["index_cols"]
    if len(index_cols) != 1:
        raise UnsafeFileError(f"{path}: a table with {len(index_cols)} index columns is not supported.")
    index_field = index_cols[0][1]
    index_values = data[index_field]
    if index_values.dtype.kind == "S":
        index_values = np.array([v.decode("utf-8") for v in index_values], dtype=object)
    info = attrs.get("info") or {}
    table_attrs = _attrs(table, path)
    blocks, labels = [], []
    for block in attrs["values_cols"]:
        values = data[block]
        if values.dtype.kind not in "fiub":
            raise UnsafeFileError(f"{path}: {block} holds {values.dtype} values; only numbers are read.")
        blocks.append(values.reshape(len(data), -1))
        labels.extend(table_attrs[f"{block}_kind"])
    column_info = info.get(1, {}) if isinstance(info, dict) else {}
    names = column_info.get("names")
    if labels and isinstance(labels[0], tuple):
        columns = pd.MultiIndex.from_tuples(labels, names=names)
    else:
        columns = pd.Index(labels, name=column_info.get("name"))
    values = np.concatenate(blocks, axis=1) if blocks else np.empty((len(data), 0))
    frame = pd.DataFrame(values, index=pd.Index(index_values), columns=columns)
    order = [
        label for axis, axis_labels in attrs.get("non_index_axes", []) if axis == 1 for label in axis_labels
    ]
    if order and len(order) == frame.shape[1]:
        frame = frame.reindex(columns=pd.MultiIndex.from_tuples(order, names=names) if names else order)
    return frame


# ------------------------------------------------------------------------------ snapshots
def check_snapshot(path: str | Path) -> None:
    """Refuse a PyTorch snapshot that cannot be loaded with ``weights_only=True``.

    ``weights_only`` loading accepts tensors, containers and numbers (and the numpy scalars
    DeepLabCut registers); a snapshot that needs anything else would run code, and is refused.

    Raises
    ------
    UnsafeFileError
        Naming the snapshot and what it would load.
    """
    import torch

    path = Path(path)
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()
        reason = next(
            (line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else ""
        )
        raise UnsafeFileError(
            f"Snapshot {path} cannot be loaded as weights only ({reason.strip()}); loading it would "
            "run code, so it is refused. Use a snapshot saved by DeepLabCut 3 (torch.save of tensors)."
        ) from None
    except (OSError, RuntimeError, EOFError) as err:
        raise UnsafeFileError(f"Snapshot {path} is not a readable PyTorch file ({err}).") from None


__all__ = [
    "SAFE_GLOBALS",
    "loads_restricted",
    "load_pickle",
    "scan_hdf",
    "check_hdf",
    "read_pandas_hdf",
    "check_snapshot",
]

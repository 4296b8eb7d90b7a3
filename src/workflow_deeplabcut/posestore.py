"""Pose arrays in the DataJoint store, written without intermediate copies.

Each ``PoseEstimation`` keeps its positions in one ``.npy`` file (frames × slots × coords, a slot
being one individual's body part), through the ``<npyfile@store>`` codec defined here. It is
DataJoint's own ``<npy@store>`` (same paths, same JSON metadata, read back as DataJoint's
lazy :class:`~datajoint.builtin_codecs.npy.NpyRef`, memory-mapped from a local store) with two
differences on the way in:

- an array is streamed to its file (``numpy.lib.format.write_array`` into the open file),
  not serialised into an in-memory buffer first (DataJoint's codec holds two extra copies);
- a :class:`FileRanges` value (byte ranges of other files, e.g. the values block of
  DeepLabCut's ``.h5`` outputs) is copied file to file by the kernel
  (``os.copy_file_range``): the stored values are DeepLabCut's bytes, bit for bit, and never
  pass through Python.

The file is written under a temporary name and renamed into place, as DataJoint does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datajoint.builtin_codecs.npy import NpyCodec
from datajoint.errors import DataJointError

#: Bytes read per step where the kernel cannot copy file to file.
CHUNK = 8 << 20


@dataclass(frozen=True)
class FileRanges:
    """An array whose C-order bytes lie, in order, in byte ranges of files.

    Attributes
    ----------
    dtype : numpy.dtype
        The values' type, byte order included.
    shape : tuple of int
        The array's shape.
    pieces : tuple of (str, int, int)
        ``(path, offset, nbytes)`` of each range, in array order.
    """

    dtype: np.dtype
    shape: tuple[int, ...]
    pieces: tuple[tuple[str, int, int], ...]

    def __post_init__(self):
        expected = int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize
        found = sum(n for _, _, n in self.pieces)
        if expected != found:
            raise ValueError(
                f"FileRanges: shape {self.shape} needs {expected} bytes, the pieces hold {found}."
            )

    def load(self) -> np.ndarray:
        """Read the array into memory (for checks; storing copies the files without this)."""
        out = np.empty(self.shape, dtype=self.dtype)
        flat = out.reshape(-1).view(np.uint8)
        at = 0
        for path, offset, nbytes in self.pieces:
            with open(path, "rb") as f:
                f.seek(offset)
                got = f.readinto(memoryview(flat[at : at + nbytes]))
            if got != nbytes:
                raise OSError(f"{path}: expected {nbytes} bytes at {offset}, read {got}.")
            at += nbytes
        return out


def _copy_range(src: str, offset: int, nbytes: int, dst) -> None:
    """Append ``nbytes`` of ``src`` from ``offset`` to the open binary file ``dst``.

    The kernel copies file to file where it can; where it cannot (another file system, an old
    kernel) the rest goes through a bounded buffer. A short write (a full disk) raises.
    """
    with open(src, "rb") as f:
        copied = 0
        try:
            dst_fd = dst.fileno()
        except (AttributeError, OSError, ValueError):
            dst_fd = None  # an object store's file: no descriptor, copied through the buffer
        if hasattr(os, "copy_file_range") and dst_fd is not None:
            dst.flush()
            try:
                while copied < nbytes:
                    done = os.copy_file_range(f.fileno(), dst_fd, nbytes - copied, offset + copied)
                    if done == 0:
                        break
                    copied += done
            except OSError:
                if copied:
                    raise
            if copied:
                dst.seek(0, os.SEEK_END)  # the buffered writer learns where the kernel left the file
        f.seek(offset + copied)
        while copied < nbytes:
            chunk = f.read(min(CHUNK, nbytes - copied))
            if not chunk:
                raise OSError(f"{src} ended {nbytes - copied} bytes before the range it should hold.")
            dst.write(chunk)  # a buffered writer writes all of it, or raises
            copied += len(chunk)


def write_npy(f, value: np.ndarray | FileRanges) -> None:
    """Write ``value`` in ``.npy`` format to the open binary file ``f``, without copying it in memory."""
    if isinstance(value, FileRanges):
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(value.dtype)),
            "fortran_order": False,
            "shape": tuple(int(n) for n in value.shape),
        }
        np.lib.format.write_array_header_1_0(f, header)
        for path, offset, nbytes in value.pieces:
            _copy_range(path, offset, nbytes, f)
    else:
        np.lib.format.write_array(f, value, allow_pickle=False)


def check_npy(path: str | Path, dtype, shape) -> None:
    """Raise ``OSError`` unless ``path`` is a complete ``.npy`` of that dtype and shape.

    Reads the header only, and compares the file's size with what the header promises: a
    write cut short (a full disk, a killed process) is never renamed into place.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        reader = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        found_shape, fortran, found_dtype = reader(f)
        data_at = f.tell()
    expected = data_at + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    size = os.path.getsize(path)
    if tuple(found_shape) != tuple(shape) or found_dtype != np.dtype(dtype) or fortran or size != expected:
        raise OSError(
            f"{path}: incomplete array file ({size} bytes, {expected} expected for {tuple(shape)} "
            f"{np.dtype(dtype)}); the write did not finish (is the disk full?)."
        )


class NpyFileCodec(NpyCodec):
    """``<npyfile@store>``: DataJoint's ``<npy@store>``, streamed to the store (see the module)."""

    name = "npyfile"

    def validate(self, value: Any) -> None:
        """Accept a numeric numpy array or a :class:`FileRanges`."""
        if isinstance(value, FileRanges):
            return
        super().validate(value)

    def encode(
        self, value: Any, *, key: dict | None = None, context: dict | None = None, store_name=None
    ) -> dict:
        """Write ``value`` to its schema-addressed path; return DataJoint's ``<npy>`` metadata."""
        schema, table, field, primary_key = self._extract_context(key, context)
        config = self._codec_config(key, context)
        path, _ = self._build_path(
            schema, table, field, primary_key, ext=".npy", store_name=store_name, config=config
        )
        backend = self._get_backend(store_name, config=config)
        if backend.protocol == "file":
            full = Path(backend._full_path(path))
            full.parent.mkdir(parents=True, exist_ok=True)
            temp = full.with_name(full.name + ".saving")
            try:
                with open(temp, "wb") as f:
                    write_npy(f, value)
                check_npy(temp, value.dtype, value.shape)
                os.replace(temp, full)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
        else:
            with backend.open(path, "wb") as f:
                write_npy(f, value)
        dtype = np.dtype(value.dtype)
        return {"path": path, "store": store_name, "dtype": str(dtype), "shape": list(value.shape)}


def check_codec() -> None:
    """Raise if another ``<npyfile>`` codec took the name (DataJoint registers codecs globally)."""
    from datajoint.codecs import get_codec

    if not isinstance(get_codec("npyfile"), NpyFileCodec):
        raise DataJointError("The <npyfile> codec is registered by another package.")


__all__ = ["FileRanges", "NpyFileCodec", "write_npy", "check_npy", "CHUNK"]


def load_stored(path: str) -> np.ndarray:
    """Load an array of the pose-array store by its store path (memory-mapped from a local folder).

    ``make_fetch`` methods pass the path (cheap to hash and compare before the insert) and
    ``make_compute`` reads the array with this, without a query.
    """
    import io

    import datajoint as dj
    from datajoint.hash_registry import get_store_backend

    from .database import STORE

    backend = get_store_backend(STORE, config=dj.config)
    if backend.protocol == "file":
        return np.load(backend._full_path(path), mmap_mode="r", allow_pickle=False)
    return np.load(io.BytesIO(backend.get_buffer(path)), allow_pickle=False)


class StoredFrames:
    """Frames ``start`` to ``stop`` of a stored pose array, read on demand (no memory map).

    ``frames[a:b]`` reads those frames from the ``.npy`` file with one plain read into a new
    array: a long pass over an array (e.g. triangulating three views) keeps only its current
    block in memory, where a memory map would keep every page it touched resident. A store
    that is not a local folder gives the whole array, read once.
    """

    def __init__(self, path: str, start: int = 0, stop: int | None = None):
        import datajoint as dj
        from datajoint.hash_registry import get_store_backend

        from .database import STORE

        backend = get_store_backend(STORE, config=dj.config)
        self._array = None
        if backend.protocol == "file":
            self._file = Path(backend._full_path(path))
            fmt = np.lib.format
            with open(self._file, "rb") as f:
                version = fmt.read_magic(f)
                header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                shape, fortran, dtype = header(f) if header else (None, True, None)
                self._offset = f.tell()
            if fortran:  # not laid out frame by frame (or an unknown header): a memory map
                self._array = np.load(self._file, mmap_mode="r", allow_pickle=False)
                shape, dtype = self._array.shape, self._array.dtype
        else:
            self._array = load_stored(path)
            shape, dtype = self._array.shape, self._array.dtype
        self.dtype = np.dtype(dtype)
        self._row = int(np.prod(shape[1:], dtype=np.int64))
        self._inner = tuple(shape[1:])
        self.start = start
        self.stop = shape[0] if stop is None else stop
        self.shape = (self.stop - self.start, *self._inner)

    def __getitem__(self, frames: slice) -> np.ndarray:
        first, last, _ = frames.indices(self.shape[0])
        a, b = self.start + first, self.start + max(first, last)
        if self._array is not None:
            return np.array(self._array[a:b])
        count = (b - a) * self._row
        block = np.fromfile(
            self._file,
            dtype=self.dtype,
            count=count,
            offset=self._offset + a * self._row * self.dtype.itemsize,
        )
        return block.reshape(b - a, *self._inner)

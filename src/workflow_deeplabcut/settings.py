"""Workflow settings: schema prefix, data roots, embedded-database folder.

Each setting is read, first match wins, from

1. :func:`configure` called at run time;
2. an environment variable (``WORKFLOW_DLC_*``, table below);
3. the ``"workflow_deeplabcut"`` object of the ``datajoint.json`` DataJoint found;
4. a default under the per-user data folder (``platformdirs.user_data_path``).

=====================  ===============================  ===========================================
setting                environment variable             default
=====================  ===============================  ===========================================
``prefix``             ``WORKFLOW_DLC_PREFIX``          ``"workflow_dlc_"``
``root_data_dirs``     ``WORKFLOW_DLC_ROOT_DATA_DIR``   ``<data home>/data`` (``os.pathsep`` list)
``processed_data_dir`` ``WORKFLOW_DLC_PROCESSED_DIR``   ``<data home>/processed``
``store_dir``          ``WORKFLOW_DLC_STORE_DIR``       ``<processed_data_dir>/datajoint-store``
``embedded_dir``       ``WORKFLOW_DLC_EMBEDDED_DIR``    ``<data home>/pgdata``
``database``           ``WORKFLOW_DLC_DATABASE``        ``auto``: embedded unless DataJoint is
                                                        configured (``DJ_HOST`` or a host in
                                                        ``datajoint.json``); or ``embedded``/
                                                        ``server``
``gpu_only``           ``WORKFLOW_DLC_GPU_ONLY``        ``false``: any worker takes GPU work
                                                        (training, trigger-mode inference);
                                                        ``true``: only workers with a GPU
``slurm_options``      ``WORKFLOW_DLC_SLURM_OPTIONS``   none: extra ``#SBATCH`` options for
                                                        ``submit`` (a JSON list, or lines/``;``
                                                        in the environment variable)
=====================  ===============================  ===========================================

Every path stored in the pipeline is relative to one of the roots (the raw roots, then the
processed root). :func:`find_full_path` and :func:`to_relative` convert, and refuse any path
that resolves outside the roots.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import platformdirs

from .errors import ConfigurationError, InputError

ENV_VARS = {
    "prefix": "WORKFLOW_DLC_PREFIX",
    "root_data_dirs": "WORKFLOW_DLC_ROOT_DATA_DIR",
    "processed_data_dir": "WORKFLOW_DLC_PROCESSED_DIR",
    "store_dir": "WORKFLOW_DLC_STORE_DIR",
    "embedded_dir": "WORKFLOW_DLC_EMBEDDED_DIR",
    "database": "WORKFLOW_DLC_DATABASE",
    "gpu_only": "WORKFLOW_DLC_GPU_ONLY",
    "slurm_options": "WORKFLOW_DLC_SLURM_OPTIONS",
}
CONFIG_SECTION = "workflow_deeplabcut"
DATABASE_MODES = ("auto", "embedded", "server")
#: A schema prefix: lowercase letters, digits and underscores, starting with a letter (PostgreSQL
#: folds unquoted names to lowercase and MySQL's are case-sensitive on Linux, so only these are
#: the same name everywhere). The longest schema name appended is 11 characters.
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,50}$")


class PathOutsideRootsError(InputError):
    """A path resolves outside every configured data root."""


@dataclass(frozen=True)
class Settings:
    """Resolved workflow settings (see the module docstring for their sources)."""

    prefix: str
    root_data_dirs: tuple[Path, ...]
    processed_data_dir: Path
    store_dir: Path
    embedded_dir: Path
    database: str = "auto"
    gpu_only: bool = False
    slurm_options: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def all_roots(self) -> tuple[Path, ...]:
        """The raw data roots followed by the processed root, without repeats."""
        roots = list(self.root_data_dirs)
        if self.processed_data_dir not in roots:
            roots.append(self.processed_data_dir)
        return tuple(roots)


_overrides: dict = {}
_cached: Settings | None = None


def data_home() -> Path:
    """Return the per-user folder that holds the default roots and the embedded database."""
    return platformdirs.user_data_path("workflow-deeplabcut", appauthor=False)


def _config_file_section() -> dict:
    import datajoint as dj

    path = getattr(dj.config, "_config_path", None)
    if not path:
        return {}
    try:
        section = json.loads(Path(path).read_text()).get(CONFIG_SECTION, {})
    except (OSError, ValueError) as err:
        raise ConfigurationError(f"Cannot read the '{CONFIG_SECTION}' section of {path}: {err}") from err
    if not isinstance(section, dict):
        raise ConfigurationError(f"'{CONFIG_SECTION}' in {path} must be a JSON object, not {section!r}")
    return section


def _paths(value) -> tuple[Path, ...]:
    if isinstance(value, str | os.PathLike):
        value = [p for p in str(value).split(os.pathsep) if p]
    return tuple(Path(p).expanduser().resolve() for p in value)


def load_settings() -> Settings:
    """Resolve every setting from its sources, without caching.

    Returns
    -------
    Settings
        The resolved settings; ``sources`` records where each value came from.
    """
    file_section = _config_file_section()
    raw, sources = {}, {}
    for name, env in ENV_VARS.items():
        if name in _overrides:
            raw[name], sources[name] = _overrides[name], "configure()"
        elif os.environ.get(env):
            raw[name], sources[name] = os.environ[env], env
        elif name in file_section:
            raw[name], sources[name] = file_section[name], f"datajoint.json:{CONFIG_SECTION}"
    home = data_home()
    processed = _paths(raw.get("processed_data_dir", home / "processed"))[0]
    database = str(raw.get("database", "auto")).lower()
    if database not in DATABASE_MODES:
        raise ConfigurationError(
            f"Unknown database mode {database!r} (from {sources.get('database')}); "
            f"use one of {', '.join(DATABASE_MODES)}."
        )
    prefix = str(raw.get("prefix", "workflow_dlc_"))
    check_prefix(prefix, sources.get("prefix", "the default"))
    return Settings(
        prefix=prefix,
        root_data_dirs=_paths(raw.get("root_data_dirs", home / "data")),
        processed_data_dir=processed,
        store_dir=_paths(raw.get("store_dir", processed / "datajoint-store"))[0],
        embedded_dir=_paths(raw.get("embedded_dir", home / "pgdata"))[0],
        database=database,
        gpu_only=_flag(raw.get("gpu_only", False), sources.get("gpu_only")),
        slurm_options=_sbatch_options(raw.get("slurm_options", ()), sources.get("slurm_options")),
        sources=sources,
    )


def _flag(value, source) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"gpu_only={value!r} (from {source}) is not a yes/no value; use true or false.")


def _sbatch_options(value, source) -> tuple[str, ...]:
    """Split and check extra sbatch options: each starts with '-' and is one line."""
    if isinstance(value, str):
        value = [v for part in value.splitlines() for v in part.split(";")]
    if not isinstance(value, list | tuple):
        raise ConfigurationError(
            f"slurm_options (from {source}) must be a list of sbatch options, not {value!r}."
        )
    options = tuple(str(v).strip() for v in value if str(v).strip())
    bad = [o for o in options if not o.startswith("-") or "\n" in o or "\r" in o]
    if bad:
        raise ConfigurationError(
            f"slurm_options (from {source}) has {bad}: each must be one sbatch option such as "
            "'--account=mylab' or '--qos=normal'."
        )
    return options


def check_prefix(prefix: str, source: str = "") -> None:
    """Refuse a schema prefix that is not the same name on every backend.

    Raises
    ------
    ConfigurationError
        Naming the prefix, where it came from and a prefix that works.
    """
    if PREFIX_PATTERN.match(prefix) and not prefix.startswith("pg_"):
        return
    suggestion = re.sub(r"[^a-z0-9_]", "_", prefix.lower()).lstrip("_0123456789") or "workflow_dlc_"
    if suggestion.startswith("pg_"):
        suggestion = "lab_" + suggestion
    raise ConfigurationError(
        f"Schema prefix {prefix!r}{f' (from {source})' if source else ''} is not usable: use lowercase "
        "letters, digits and underscores, starting with a letter, at most 51 characters, not "
        f"starting with 'pg_' (PostgreSQL folds capitals and reserves pg_). Try {suggestion[:51]!r}."
    )


def get_settings() -> Settings:
    """Return the current settings (resolved once, until :func:`configure` is called)."""
    global _cached
    if _cached is None:
        _cached = load_settings()
    return _cached


def configure(**values) -> Settings:
    """Set settings at run time; they take precedence over every other source.

    Parameters
    ----------
    **values
        Any of ``prefix``, ``root_data_dirs``, ``processed_data_dir``, ``store_dir``,
        ``embedded_dir``, ``database``. ``None`` removes a run-time value.

    Returns
    -------
    Settings
        The new settings.

    Notes
    -----
    Call this before importing :mod:`workflow_deeplabcut.pipeline`: the schema prefix and the
    database are fixed when the pipeline is activated.
    """
    global _cached
    unknown = set(values) - set(ENV_VARS)
    if unknown:
        raise ConfigurationError(f"Unknown setting(s) {sorted(unknown)}; known: {sorted(ENV_VARS)}")
    previous = dict(_overrides)
    for name, value in values.items():
        if value is None:
            _overrides.pop(name, None)
        else:
            _overrides[name] = value
    _cached = None
    try:
        return get_settings()
    except ConfigurationError:
        _overrides.clear()
        _overrides.update(previous)  # a refused value leaves the settings as they were
        raise


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def to_relative(path: str | os.PathLike, roots: tuple[Path, ...] | None = None) -> str:
    """Express a path relative to the data root that contains it.

    Parameters
    ----------
    path : str or path-like
        An absolute path, or one relative to the current directory.
    roots : tuple of Path, optional
        Roots to consider; defaults to every configured root.

    Returns
    -------
    str
        The POSIX-style path relative to the first root that contains it.

    Raises
    ------
    PathOutsideRootsError
        If the path is in none of the roots.
    """
    roots = roots or get_settings().all_roots
    full = Path(path).expanduser().resolve()
    for root in roots:
        if _within(full, root):
            return full.relative_to(root).as_posix()
    raise PathOutsideRootsError(
        f"{full} is outside the data roots {[str(r) for r in roots]}. Move it under a root, or "
        f"add its folder to {ENV_VARS['root_data_dirs']} (or the '{CONFIG_SECTION}' section "
        f"of datajoint.json)."
    )


def find_full_path(relative: str | os.PathLike, roots: tuple[Path, ...] | None = None) -> Path:
    """Find the absolute path of a root-relative path.

    Parameters
    ----------
    relative : str or path-like
        A path relative to one of the roots (``..`` may not leave the root).
    roots : tuple of Path, optional
        Roots to search, in order; defaults to every configured root.

    Returns
    -------
    Path
        The first existing ``root / relative``.

    Raises
    ------
    PathOutsideRootsError
        If the path is absolute or climbs out of its root.
    FileNotFoundError
        If it exists under none of the roots.
    """
    roots = roots or get_settings().all_roots
    rel = PurePosixPath(Path(relative).as_posix())
    if rel.is_absolute():
        raise PathOutsideRootsError(
            f"Stored paths are relative to a data root; got the absolute path {relative}. "
            "Pass it through workflow_deeplabcut.settings.to_relative() first."
        )
    for root in roots:
        candidate = (root / rel).resolve()
        if not _within(candidate, root):
            raise PathOutsideRootsError(f"{relative} climbs out of the data root {root}.")
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"{relative} was not found under any data root {[str(r) for r in roots]}. Check the "
        f"path, or the roots ({ENV_VARS['root_data_dirs']}, {ENV_VARS['processed_data_dir']})."
    )


def with_prefix(name: str) -> str:
    """Return the full schema name for one of the workflow's schemas."""
    return get_settings().prefix + name


__all__ = [
    "Settings",
    "PathOutsideRootsError",
    "configure",
    "get_settings",
    "load_settings",
    "find_full_path",
    "to_relative",
    "with_prefix",
    "check_prefix",
    "data_home",
]

"""SandboxConfig: the old pysandbox's configuration, mapped onto pysandbox's policy schema."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Union

from ._errors import PolicyError

#: pysandbox's features (the same names as ``pysandbox policy features``).
FEATURES = (
    "codecs", "datetime", "debug_sandbox", "encodings", "exit", "future", "hashlib", "help",
    "interpreter", "itertools", "math", "network", "random", "regex", "site", "stderr", "stdin",
    "stdout", "subprocess", "threads", "time", "traceback", "unicodedata",
)  # fmt: skip

_KEYWORDS = (
    "timeout", "max_memory", "cpu_time", "max_output", "max_result", "processes",
    "recursion_limit", "preset", "network", "python", "env", "allow_write", "open_files",
    "file_size", "tmp_size", "use_subprocess", "cpython_restricted", "preload",
    "warmup",
)  # fmt: skip

#: The default address-space limit in MB (pysandbox's), and the "full" preset's: numpy, pandas
#: and matplotlib map ~200 MB before any data (docs/policy.md).
DEFAULT_MEMORY = 250
FULL_MEMORY = 512

Size = Union[int, str, None]


def _size(value: Size, unit_mb: bool, name: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        raise PolicyError(f"{name}: expected a size such as 128 (MB) or '128M', got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise PolicyError(f"{name}: expected a positive size, got {value}")
        return f"{value}M" if unit_mb else str(value)
    if isinstance(value, str):
        return value
    raise PolicyError(f"{name}: expected a size such as 128 (MB) or '128M', got {value!r}")


def _duration(value: Union[int, float, str, None], name: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        raise PolicyError(f"{name}: expected seconds or a duration such as '250ms', got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise PolicyError(f"{name}: expected a positive number of seconds, got {value}")
        return f"{max(1, round(value * 1000))}ms"
    if isinstance(value, str):
        return value
    raise PolicyError(f"{name}: expected seconds or a duration such as '250ms', got {value!r}")


class SandboxConfig:
    """What the sandboxed code may do, in the old pysandbox's words.

    >>> config = SandboxConfig("math", "stdout", timeout=2, max_memory="128M")
    >>> config.enable("datetime")
    >>> config.allowModule("json", "dumps")
    >>> sorted(config.features)
    ['datetime', 'math', 'stdout']
    >>> SandboxConfig("sockets")
    Traceback (most recent call last):
      ...
    pysandbox._errors.PolicyError: Unknown feature: sockets (valid: codecs, datetime, ...)

    Limits: ``timeout`` (seconds, default 5), ``max_memory`` (MB as an int, or a string such as
    ``"128M"``; default 250 MB, 512 MB with the ``"full"`` preset), ``cpu_time``, ``max_output``
    (bytes kept of stdout and of stderr), ``max_result`` (bytes of the returned data),
    ``processes``, ``open_files``, ``file_size``, ``tmp_size``, ``recursion_limit``. Others:
    ``preset`` (``"default"``, ``"stdlib"``, ``"full"``), ``network`` (``"none"``/``"host"``),
    ``python`` (the interpreter to run), ``env`` (variables the code sees), ``allow_write``
    (writable host paths), ``preload`` (modules imported before the code: by a warm pool's
    workers once, so that every call finds them in ``sys.modules``; only modules the policy
    allows, e.g. ``preload=["numpy", "pandas"]`` with ``preset="full"``), ``warmup`` (code run
    once after the preloads, by a warm pool's workers before any call, to take first-use costs
    such as a first plot; its names are dropped).
    """

    def __init__(self, *features: str, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(_KEYWORDS))
        if unknown:
            raise TypeError("unexpected keywords: " + ", ".join(unknown))
        if kwargs.get("use_subprocess", True) is not True:
            raise PolicyError(
                "use_subprocess=False is not supported: the code always runs in a separate "
                "sandboxed process"
            )
        self._features: List[str] = []
        self._modules: Dict[str, List[str]] = {}
        self._read: List[str] = []
        self._write: List[str] = [os.fspath(p) for p in kwargs.get("allow_write") or ()]
        self.timeout: Union[int, float, str] = kwargs.get("timeout", 5.0)
        self._max_memory: Size = kwargs.get("max_memory")
        self._memory_given = "max_memory" in kwargs
        self.cpu_time: Union[int, float, str, None] = kwargs.get("cpu_time")
        self.max_output: Size = kwargs.get("max_output")
        self.max_result: int = int(kwargs.get("max_result", 16 << 20))
        self.processes: Optional[int] = kwargs.get("processes")
        self.open_files: Optional[int] = kwargs.get("open_files")
        self.file_size: Size = kwargs.get("file_size")
        self.tmp_size: Size = kwargs.get("tmp_size")
        self.recursion_limit: Optional[int] = kwargs.get("recursion_limit")
        self.preset: str = kwargs.get("preset", "default")
        self.network: Optional[str] = kwargs.get("network")
        self.python: Optional[str] = kwargs.get("python")
        self.env: Dict[str, str] = dict(kwargs.get("env") or {})
        self.cpython_restricted: bool = bool(kwargs.get("cpython_restricted", False))
        self._preload: List[str] = []
        self.preload = kwargs.get("preload") or []
        self.warmup: Optional[str] = kwargs.get("warmup")
        for f in features:
            self.enable(f)

    @property
    def max_memory(self) -> Size:
        """The address-space limit (MB, or a size string; None: none). Unless set, the policy's
        default: 250 MB, 512 MB with the "full" preset."""
        if self._memory_given:
            return self._max_memory
        return FULL_MEMORY if self.preset == "full" else DEFAULT_MEMORY

    @max_memory.setter
    def max_memory(self, value: Size) -> None:
        self._max_memory = value
        self._memory_given = True

    @property
    def preload(self) -> List[str]:
        """Modules imported before the code (a warm pool's workers: once, for every call)."""
        return list(self._preload)

    @preload.setter
    def preload(self, names: Any) -> None:
        if isinstance(names, (str, bytes)) or not all(isinstance(n, str) for n in names):
            raise PolicyError(
                f"preload: expected a list of module names such as ['numpy', 'pandas'], "
                f"got {names!r}"
            )
        self._preload = list(names)

    # pysandbox's API ---------------------------------------------------------------------

    def enable(self, feature: str) -> None:
        """Turn a feature on (its dependencies follow, as in pysandbox)."""
        if feature not in FEATURES:
            raise PolicyError(
                f"Unknown feature: {feature} (valid: {', '.join(FEATURES[:2])}, ...; "
                f"all: {', '.join(FEATURES)})"
            )
        if feature not in self._features:
            self._features.append(feature)

    def has_feature(self, feature: str) -> bool:
        return feature in self._features

    @property
    def features(self) -> List[str]:
        """The features turned on explicitly."""
        return list(self._features)

    def allowModule(self, name: str, *symbols: str) -> None:  # noqa: N802 (pysandbox's name)
        """Let the code import ``name`` (or only ``symbols`` of it)."""
        have = self._modules.get(name)
        if have is not None and (not have or not symbols):
            self._modules[name] = []
        else:
            self._modules[name] = (have or []) + [s for s in symbols if s not in (have or [])]

    allow_module = allowModule

    def allowPath(self, path: Union[str, os.PathLike]) -> None:  # noqa: N802
        """Make a host path readable (read-only) inside, at the same place."""
        self._read.append(os.fspath(path))

    allow_path = allowPath

    def allowWrite(self, path: Union[str, os.PathLike]) -> None:  # noqa: N802
        """Make a host path writable inside, at the same place."""
        self._write.append(os.fspath(path))

    allow_write = allowWrite

    @property
    def import_whitelist(self) -> Dict[str, List[str]]:
        return {k: list(v) for k, v in self._modules.items()}

    @property
    def open_whitelist(self) -> List[str]:
        return list(self._read)

    @property
    def use_subprocess(self) -> bool:
        return True

    # The policy -----------------------------------------------------------------------------

    def to_policy(self) -> Dict[str, Any]:
        """The policy (the JSON form of ``pysandbox policy show``) this configuration means."""
        limits: Dict[str, Any] = {}
        for key, value in (
            ("wall", _duration(self.timeout, "timeout")),
            ("cpu", _duration(self.cpu_time, "cpu_time")),
            ("output", _size(self.max_output, False, "max_output")),
            ("file_size", _size(self.file_size, False, "file_size")),
            ("tmp_size", _size(self.tmp_size, False, "tmp_size")),
        ):
            if value is not None:
                limits[key] = value
        if self._memory_given:
            limits["memory"] = (
                "none" if self._max_memory is None else _size(self._max_memory, True, "max_memory")
            )
        if self.processes is not None:
            limits["processes"] = self.processes
        if self.open_files is not None:
            limits["open_files"] = self.open_files
        policy: Dict[str, Any] = {
            "preset": self.preset,
            "features": list(self._features),
            "modules": {k: list(v) for k, v in self._modules.items()},
            "allow_read": list(self._read),
            "allow_write": list(self._write),
            "limits": limits,
            "env": dict(self.env),
        }
        if self._preload:
            policy["preload"] = list(self._preload)
        if self.warmup is not None:
            if not isinstance(self.warmup, str):
                raise PolicyError(f"warmup: expected Python code as a str, got {self.warmup!r}")
            policy["warmup"] = self.warmup
        if self.network is not None:
            policy["network"] = self.network
        if self.recursion_limit is not None:
            policy["recursion_limit"] = self.recursion_limit
        if self.python is not None:
            policy["python"] = os.fspath(self.python)
        return policy

    def __repr__(self) -> str:
        return f"SandboxConfig({', '.join(map(repr, self._features))})"

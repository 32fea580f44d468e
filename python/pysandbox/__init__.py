"""pysandbox: run untrusted Python code safely, with the old pysandbox's API.

>>> from pysandbox import Sandbox, SandboxConfig
>>> Sandbox(SandboxConfig("math")).eval("2 ** 10")
1024

The code runs in the host's real CPython inside a Linux sandbox (namespaces, a minimal read-only
filesystem, Landlock, seccomp, resource limits), started by the ``pysandbox`` binary that ships
with this package. Module and builtin policies only shape what the code sees; the OS sandbox is
the security boundary.
"""

from ._config import FEATURES, SandboxConfig
from ._errors import (
    LimitExceeded,
    MalformedResult,
    MemoryLimitExceeded,
    OutputLimitExceeded,
    PolicyError,
    ProcessLimitExceeded,
    SandboxCrashed,
    SandboxedException,
    SandboxError,
    Timeout,
)
from ._sandbox import (
    CaseResult,
    DisplayResult,
    JudgeResult,
    Result,
    Sandbox,
    Session,
    helper_binary,
)

DEFAULT_TIMEOUT = 5.0

__all__ = [
    "CaseResult",
    "DEFAULT_TIMEOUT",
    "DisplayResult",
    "FEATURES",
    "JudgeResult",
    "LimitExceeded",
    "MalformedResult",
    "MemoryLimitExceeded",
    "OutputLimitExceeded",
    "PolicyError",
    "ProcessLimitExceeded",
    "Result",
    "Sandbox",
    "SandboxConfig",
    "SandboxCrashed",
    "SandboxError",
    "SandboxedException",
    "Session",
    "Timeout",
    "helper_binary",
]

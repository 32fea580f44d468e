"""The exceptions of pysandbox. Every one derives from SandboxError."""

from __future__ import annotations

from typing import Optional


class SandboxError(Exception):
    """Something went wrong running code in the sandbox (base of every pysandbox error)."""


class PolicyError(SandboxError, ValueError):
    """The configuration is invalid: nothing ran. Also a ValueError, as in the old pysandbox."""


class LimitExceeded(SandboxError):
    """A resource limit stopped the code. ``limit`` names it (``wall``, ``memory``, ...)."""

    def __init__(self, message: str, limit: str, result: Optional[object] = None) -> None:
        super().__init__(message)
        self.limit = limit
        #: The partial :class:`Result` (output so far, usage), when there is one.
        self.result = result

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Picklable (Ray carries errors between processes): the default would call
        # ``cls(message)`` and fail on the missing arguments.
        return (type(self), (str(self), self.limit, self.result))


class Timeout(LimitExceeded):
    """The code ran longer than its wall-clock (``timeout``) or CPU-time (``cpu_time``) limit."""


class MemoryLimitExceeded(LimitExceeded):
    """The code needed more memory than ``max_memory``."""


class OutputLimitExceeded(LimitExceeded):
    """The value the code returned is larger than ``max_result``."""


class ProcessLimitExceeded(LimitExceeded):
    """The code started more processes or threads than ``processes`` allows."""


class MalformedResult(SandboxError):
    """What came back from the sandbox is not a result pysandbox sends: not data, or data of
    the wrong shape. The sandboxed code can write its own result in place of the real one;
    whatever it writes ends here, never as another exception type."""


class SandboxCrashed(SandboxError):
    """The sandboxed interpreter was killed by a signal (a crash in C code, or a forbidden
    system call: SIGSYS)."""

    def __init__(self, message: str, signal: int) -> None:
        super().__init__(message)
        self.signal = signal

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.args[0], self.signal))


class SandboxedException(SandboxError):
    """The sandboxed code raised an exception.

    ``type_name`` and ``message`` describe it; ``traceback`` is its traceback, formatted with
    the code's own source lines, as Python would print it.
    """

    def __init__(self, type_name: str, message: str, traceback: str) -> None:
        super().__init__(f"the sandboxed code raised {type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.type_name, self.message, self.traceback))

    def __str__(self) -> str:
        head = f"the sandboxed code raised {self.type_name}: {self.message}"
        return head + ("\n\n" + self.traceback.rstrip() if self.traceback else "")

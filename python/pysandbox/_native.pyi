"""The data codec for values crossing the sandbox boundary (implemented in Rust)."""

from typing import Any

__version__: str

def encode(obj: object, path: str = "value") -> str:
    """Encode data (None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset) as
    pysandbox's tagged JSON. Raises TypeError naming the path of anything else."""

def decode(text: str) -> object:
    """Decode tagged JSON that came out of the sandbox; ValueError on anything not data."""

class WarmFailure(Exception):
    """A warm pool or session failed; ``args`` are ``(kind, message)``, kind one of policy,
    setup, busy, closed, ended, worker, request, malformed (the sandbox returned what is not
    data), input (a judge's bad cases or compare mode)."""

class WarmPool:
    """Warm workers (``pysandbox worker`` processes), each keeping an isolated child ready."""

    def __init__(self, binary: str, policy: str, workers: int | None = None,
                 max_queue: int = 1024, recycle_after: int = 10000, judge: bool = False) -> None:
        """``judge``: a pool for :meth:`judge`, its policy with the ``stdin`` feature."""
    @property
    def gives_stdin(self) -> bool:
        """Whether the code can read its standard input under this pool's policy."""
    def judge(self, code: str, cases: str, compare: str = "exact") -> str:
        """``code`` against every case (a JSON list of {"stdin", "expected"}), each in a fresh
        child; the result as JSON text (cases with verdicts, passed, total, compile_error).
        Bad input fails with kind ``input`` before anything runs."""
    def call(self, op: str, code: str, stdin: str | None, data: dict[str, Any],
             max_result: int) -> tuple[dict[str, Any], Any, bool, bool]:
        """The package's exec/eval/call in a fresh child: (outcome, decoded result or None,
        whether there was a result, whether it was longer than max_result)."""
    def close(self) -> None: ...
    def worker_pids(self) -> list[int]: ...

class WarmSession:
    """One stateful session: a child that keeps its namespace between calls."""

    def __init__(self, binary: str, policy: str, idle: float, lifetime: float = 3600.0) -> None: ...
    def execute(self, request: str) -> str: ...
    @property
    def is_open(self) -> bool: ...
    def close(self) -> None: ...

"""Sandbox: run code, evaluate expressions and call functions in pysandbox's OS sandbox.

The work is done by the ``pysandbox`` binary, started as helper processes: ``pysandbox serve``
(a fresh jail per call) spoken to over pipes, or in warm mode ``pysandbox worker`` processes
driven by the native pool (:class:`pysandbox._native.WarmPool`, Rust), which talks to each
request's isolated child directly. This process never forks itself into a sandbox. Values cross
the boundary as data only (see :mod:`pysandbox._native`); nothing that comes out is unpickled or
evaluated.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import functools
import inspect
import json
import os
import shutil
import signal as _signal
import subprocess
import textwrap
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from . import _native
from ._config import SandboxConfig
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

_HERE = os.path.dirname(os.path.abspath(__file__))


def helper_binary() -> str:
    """The ``pysandbox`` binary: ``$PYSANDBOX_BIN``, the one shipped in the package, or PATH's."""
    env = os.environ.get("PYSANDBOX_BIN")
    if env:
        return env
    bundled = os.path.join(_HERE, "_bin", "pysandbox")
    if os.path.isfile(bundled):
        if not os.access(bundled, os.X_OK):
            raise SandboxError(f"{bundled} is not executable; reinstall pysandbox")
        return bundled
    found = shutil.which("pysandbox")
    if found:
        return found
    raise SandboxError(
        "the pysandbox binary was not found: it ships inside the package (pysandbox/_bin); "
        "reinstall the package (`pip install .` builds it), or set PYSANDBOX_BIN"
    )


@dataclass(frozen=True)
class Result:
    """What a run produced: the outcome every front end shows (docs/outcome.md), and the data
    of exec/eval/call."""

    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    cpu_time: float
    wall_time: float
    peak_memory: int
    exit_code: Optional[int]
    #: The value of ``eval`` or ``call``.
    value: Any = None
    #: The code's globals after the run, data values only (copies: the caller's are unchanged).
    globals: Dict[str, Any] = field(default_factory=dict)
    #: The locals after the run when ``locals`` was given.
    locals: Optional[Dict[str, Any]] = None
    #: ``"ok"``, ``"error"`` (a non-zero exit), ``"limit"``, ``"crashed"``, ``"sandbox_error"``.
    status: str = "ok"
    #: The limit that stopped the run or cut its output (``"output"``), if any.
    limit: Optional[str] = None
    #: The signal that ended the run, if one did.
    signal: Optional[int] = None
    #: Rich outputs (MIME bundles: :class:`DisplayResult`).
    results: List["DisplayResult"] = field(default_factory=list)
    #: Files collected after the run: name → bytes.
    files: Dict[str, bytes] = field(default_factory=dict)
    #: Some files were left out (count or size bounds).
    files_truncated: bool = False


@dataclass(frozen=True)
class DisplayResult:
    """A rich output: a MIME bundle (``data``: MIME type → text, binary types base64, as
    Jupyter's), the cell's main result or a ``display()``. Notebooks show it natively."""

    data: Dict[str, str]
    is_main_result: bool = False

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Dict[str, str]:
        return dict(self.data)


@dataclass(frozen=True)
class CaseResult:
    """One case of :meth:`Sandbox.judge`: its verdict, its output and its usage."""

    #: ``"AC"`` (accepted), ``"WA"`` (wrong answer), ``"TLE"`` (wall or CPU time), ``"MLE"``
    #: (memory), ``"RE"`` (an uncaught exception, a non-zero exit, a signal or another limit),
    #: ``"OLE"`` (output limit).
    verdict: str
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    exit_code: Optional[int]
    #: The signal that killed it, if one did.
    signal: Optional[int]
    #: The limit that stopped it (``"wall"``, ``"cpu"``, ``"memory"``, ``"output"``, ...).
    limit: Optional[str]
    wall_time: float
    cpu_time: float
    peak_memory: int


@dataclass(frozen=True)
class JudgeResult:
    """What :meth:`Sandbox.judge` found: every case's result in case order, and the totals."""

    cases: List[CaseResult]
    #: Cases with the verdict ``"AC"``.
    passed: int
    total: int
    #: ``{"type", "message", "traceback"}`` when the program does not compile (then no case
    #: ran: each is ``"RE"`` with the traceback as its stderr).
    compile_error: Optional[Dict[str, str]] = None


_CASE_FIELDS = tuple(CaseResult.__dataclass_fields__)


def _cases_json(cases: Any) -> str:
    """The cases as JSON text for the native judge, which checks every field; here only what
    JSON cannot hold is refused, naming where it is."""
    if isinstance(cases, (str, bytes, Mapping)) or not isinstance(cases, Sequence):
        raise TypeError("cases must be a list of dicts such as {'stdin': '1 2\\n', "
                        f"'expected': '3\\n'}}, got {type(cases).__name__}")  # fmt: skip
    items = list(cases)
    try:
        return json.dumps(items, allow_nan=False)
    except (TypeError, ValueError):
        pass
    for i, case in enumerate(items):
        pairs = case.items() if isinstance(case, Mapping) else [(None, case)]
        for key, value in pairs:
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                where = f"cases[{i}]" + ("" if key is None else f"[{key!r}]")
                raise TypeError(f"{where}: a {type(value).__name__} cannot be part of a case: "
                                "stdin and expected are str (decode bytes first)") from None  # fmt: skip
    raise TypeError("cases: not JSON-like data")


class _Helper:
    """One ``pysandbox serve`` process: one request at a time."""

    def __init__(self, binary: str) -> None:
        self.proc = subprocess.Popen(
            [binary, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self.next_id = 0

    def request(self, req: Dict[str, Any]) -> Dict[str, Any]:
        self.next_id += 1
        req["id"] = self.next_id
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(req).encode() + b"\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError) as e:
            raise SandboxError(f"the pysandbox helper process failed: {e}") from None
        if not line:
            code = self.proc.poll()
            raise SandboxError(f"the pysandbox helper process ended unexpectedly (status {code})")
        resp = json.loads(line)
        if resp.get("id") not in (self.next_id, None):
            raise SandboxError("the pysandbox helper answered another request")
        return resp

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


class _Pool:
    """Helper processes shared by the threads using one Sandbox (started on demand)."""

    def __init__(self) -> None:
        self.factory = lambda: _Helper(helper_binary())
        self.lock = threading.Lock()
        self.idle: List[_Helper] = []
        self.closed = False

    def acquire(self) -> _Helper:
        with self.lock:
            if self.closed:
                raise SandboxError("the sandbox is closed")
            while self.idle:
                h = self.idle.pop()
                if h.alive():
                    return h
                h.close()
        return self.factory()

    def release(self, h: _Helper, healthy: bool) -> None:
        with self.lock:
            if healthy and not self.closed and h.alive():
                self.idle.append(h)
                return
        h.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            idle, self.idle = self.idle, []
        for h in idle:
            h.close()


_POOLS: "weakref.WeakSet[_Pool]" = weakref.WeakSet()
#: Warm pools and sessions (native), closed at exit too.
_WARM: "weakref.WeakSet[Any]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for p in list(_POOLS):
        p.close()
    for w in list(_WARM):
        w.close()


def _warm_call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call the native warm pool, turning its failures into the package's exceptions."""
    try:
        return fn(*args)
    except _native.WarmFailure as e:
        kind, message = e.args if len(e.args) == 2 else ("worker", str(e))
        if kind == "policy":
            raise PolicyError(message) from None
        if kind == "setup":
            raise SandboxError(f"the sandbox could not start: {message}") from None
        if kind == "malformed":
            raise MalformedResult(message) from None
        if kind == "input":
            raise ValueError(message) from None
        raise SandboxError(message) from None


def _from_warm(resp: Dict[str, Any], max_result: int) -> Dict[str, Any]:
    """A warm outcome in the shape of a ``pysandbox serve`` answer."""
    result = resp.get("result")
    too_big = bool(resp.get("result_truncated")) or (result is not None and len(result) > max_result)
    outcome = {k: resp.get(k) for k in (
        "exit_code", "signal", "limit", "cpu_time", "wall_time", "peak_memory", "stdout",
        "stdout_truncated", "stderr", "stderr_truncated", "status", "error", "results", "files",
        "files_truncated")}  # fmt: skip
    return {"ok": True, "outcome": outcome, "result": None if too_big else result,
            "result_truncated": too_big, "report_error": resp.get("report_error")}  # fmt: skip


#: The keys of a result (bootstrap/support.py, ``_pysandbox_api``).
_RESULT_KEYS = ("value", "globals", "locals", "error", "exit")
_ERROR_KEYS = ("type", "message", "traceback")


def _checked(payload: Any) -> Dict[str, Any]:
    """The decoded result if it has the shape the sandbox's side sends, else MalformedResult.

    The sandboxed code can write a result of its own (data, but of any shape); it must not
    surface as an AttributeError or TypeError here, nor as a Result that is not one.
    """

    def bad(what: str) -> MalformedResult:
        return MalformedResult(f"the sandbox returned a malformed result: {what}")

    def names(d: Dict[Any, Any], what: str) -> None:
        for k in d:
            if not isinstance(k, str):
                raise bad(f"{what} has a key of type {type(k).__name__}, not str")

    if not isinstance(payload, dict):
        raise bad(f"it is of type {type(payload).__name__}, not dict")
    names(payload, "the result")
    for key in payload:
        if key not in _RESULT_KEYS:
            raise bad(f"unknown key {_short(key)}")
    for key in ("globals", "locals"):
        ns = payload.get(key)
        if key in payload and not (isinstance(ns, dict) or (key == "locals" and ns is None)):
            raise bad(f"{key} is of type {type(ns).__name__}, not dict")
        if isinstance(ns, dict):
            names(ns, key)
    if "error" in payload:
        e = payload["error"]
        if not isinstance(e, dict):
            raise bad(f"error is of type {type(e).__name__}, not dict")
        names(e, "error")
        for key in e:
            if key not in _ERROR_KEYS:
                raise bad(f"unknown key {_short(key)} in error")
        for key in _ERROR_KEYS:
            if key not in e:
                raise bad(f"error has no {key}")
            if not isinstance(e[key], str):
                raise bad(f"error's {key} is of type {type(e[key]).__name__}, not str")
    if "exit" in payload and not isinstance(payload["exit"], int):
        raise bad(f"exit is of type {type(payload['exit']).__name__}, not int")
    return payload


def _short(s: str) -> str:
    """``s`` quoted for a message, at most about 40 characters of it (it may be megabytes)."""
    return repr(s[:40]) + ("..." if len(s) > 40 else "")


def _files(files: Optional[Dict[str, Any]]) -> Optional[List[Any]]:
    """``files`` as (name, bytes) pairs: str contents are UTF-8."""
    if files is None:
        return None
    if not isinstance(files, dict):
        raise TypeError(f"files must be a dict of name to bytes or str, got {type(files).__name__}")
    out = []
    for name, content in files.items():
        if not isinstance(name, str):
            raise TypeError(f"files: a name must be a str, got {type(name).__name__}")
        if isinstance(content, str):
            content = content.encode()
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError(f"files[{name!r}]: bytes or str, got {type(content).__name__}")
        out.append((name, bytes(content)))
    return out


def _cell(mode: str) -> bool:
    if mode not in ("script", "cell"):
        raise PolicyError(f"unknown mode {mode!r}: expected 'script' or 'cell'")
    return mode == "cell"


def _globs(collect: Optional[List[str]]) -> Optional[List[str]]:
    if collect is None:
        return None
    if isinstance(collect, str) or not all(isinstance(g, str) for g in collect):
        raise TypeError("collect must be a list of glob strings, e.g. ['*.png']")
    return list(collect)


def _signal_name(n: int) -> str:
    try:
        return _signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


class Sandbox:
    """Runs untrusted code in pysandbox's OS sandbox, with the old pysandbox's API.

    >>> sandbox = Sandbox(SandboxConfig("math"))
    >>> sandbox.execute("import math; print(math.sqrt(data[-1]))", locals={"data": [1, 4, 9]}).stdout
    '3.0\\n'
    >>> sandbox.eval("2 ** 10")
    1024
    >>> def add(a, b):
    ...     return a + b
    >>> sandbox.call(add, 1, 2)
    3
    >>> sandbox.eval("1 / 0")
    Traceback (most recent call last):
      ...
    pysandbox._errors.SandboxedException: the sandboxed code raised ZeroDivisionError: division by zero
    <BLANKLINE>
    Traceback (most recent call last):
      File "<string>", line 1, in <module>
        1 / 0
    ...
    ZeroDivisionError: division by zero

    Safe to use from many threads at once; ``aexecute``, ``aeval`` and ``acall`` are the
    asyncio versions.
    """

    def __init__(self, config: Optional[SandboxConfig] = None, *, pool: bool = False,
                 workers: Optional[int] = None) -> None:  # fmt: skip
        self.config = config if config is not None else SandboxConfig()
        #: Warm mode: requests go to warm workers (an isolated child ready in advance, a
        #: fraction of a millisecond instead of a fresh jail per call), started here:
        #: ``workers`` of them (default: one per CPU).
        self.warm = pool
        self._workers = workers
        self._pool = _Pool()
        _POOLS.add(self._pool)
        self._warm: Optional[Any] = None
        #: The warm pool judge() runs cases on when ``_warm`` cannot (started on first use).
        self._judge: Optional[Any] = None
        self._judge_lock = threading.Lock()
        if pool:
            policy = json.dumps(self.config.to_policy())
            self._warm = _warm_call(_native.WarmPool, helper_binary(), policy, workers)
            _WARM.add(self._warm)

    # The old pysandbox's API ------------------------------------------------------------------

    def execute(
        self,
        code: str,
        globals: Optional[Dict[str, Any]] = None,
        locals: Optional[Dict[str, Any]] = None,
        *,
        stdin: Optional[str] = None,
        files: Optional[Dict[str, Any]] = None,
        collect: Optional[List[str]] = None,
        mode: str = "script",
    ) -> Result:
        """Run ``code`` like ``exec(code, globals, locals)``, in the sandbox.

        ``mode="cell"`` gives notebook semantics: the value of the last expression is the main
        result and ``display(obj)`` adds more, each a MIME bundle in ``Result.results`` (plots
        as ``image/png``, DataFrames as ``text/html``).

        The dicts are copied in (data values only) and never changed; the updated copies are in
        ``Result.globals`` and ``Result.locals``. ``files`` (name → bytes or str) are placed in
        the working directory first; the files matching ``collect`` (globs relative to it, e.g.
        ``"*.png"``, ``"out/*.csv"``) come back in ``Result.files``.
        """
        data: Dict[str, Any] = {"globals": dict(globals or {})}
        if locals is not None:
            data["locals"] = dict(locals)
        return self._run("exec", code, data, stdin, _files(files), _globs(collect), _cell(mode))

    def eval(
        self,
        expression: str,
        globals: Optional[Dict[str, Any]] = None,
        locals: Optional[Dict[str, Any]] = None,
    ) -> Any:
        """Evaluate ``expression`` in the sandbox and return its value (data only)."""
        data: Dict[str, Any] = {"globals": dict(globals or {})}
        if locals is not None:
            data["locals"] = dict(locals)
        return self._run("eval", expression, data, None).value

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``func(*args, **kwargs)`` in the sandbox and return its value.

        The function travels as its source code (``inspect.getsource``), so it must be a
        module-level or nested ``def`` that only uses its arguments, builtins and what it
        imports itself; closures and decorators do not cross.
        """
        name = getattr(func, "__name__", None)
        if not inspect.isfunction(func) or name == "<lambda>":
            raise TypeError(
                f"call() needs a function defined with def, got {type(func).__name__}"
            )
        try:
            source = textwrap.dedent(inspect.getsource(func))
        except (OSError, TypeError) as e:
            raise TypeError(f"cannot get the source of {name}(): {e}") from None
        if source.lstrip().startswith("@"):
            raise TypeError(f"{name}() is decorated: decorators do not cross into the sandbox")
        data = {"function": name, "args": list(args), "kwargs": dict(kwargs)}
        return self._run("call", source, data, None).value

    def createCallback(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:  # noqa: N802
        """A callable that runs ``func(*args, **kwargs)`` in the sandbox (pysandbox's name)."""
        return functools.partial(self.call, func, *args, **kwargs)

    # Many inputs, one program ------------------------------------------------------------

    def judge(self, code: str, cases: Sequence[Mapping[str, Any]],
              compare: str = "exact") -> JudgeResult:  # fmt: skip
        """Run the program ``code`` once per case, each in a fresh sandbox, and give a verdict.

        ``cases``: dicts ``{"stdin": "1 2\\n", "expected": "3\\n"}``; ``stdin`` is required
        (``""`` for none), a case without ``expected`` is ``"AC"`` when it runs cleanly.
        ``compare``: ``"exact"`` (byte for byte), ``"strip"`` (trailing whitespace of each line
        and of the output ignored) or ``"tokens"`` (whitespace-separated tokens).

        The cases run on warm workers, as many at once as there are workers, with this
        configuration's limits and the ``stdin`` feature on (the program reads its case's input
        with ``input()`` or ``sys.stdin``): a configuration without that feature, or a sandbox
        without ``pool=True``, starts a warm pool for judging on the first call, kept until
        :meth:`close`. A case's failure is its verdict, never an exception; bad cases or an
        unknown ``compare`` raise ``ValueError`` (``TypeError`` for what is not JSON-like
        data) before anything runs, and a failure of the sandbox itself raises
        :class:`SandboxError`.

        >>> r = Sandbox().judge("a, b = map(int, input().split())\\nprint(a + b)",
        ...                     [{"stdin": "1 2\\n", "expected": "3\\n"}, {"stdin": "2 2\\n", "expected": "5\\n"}])
        >>> [c.verdict for c in r.cases], r.passed, r.total
        (['AC', 'WA'], 1, 2)
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        if not isinstance(compare, str):
            raise TypeError(f"compare must be a str, got {type(compare).__name__}")
        text = _cases_json(cases)
        out = json.loads(_warm_call(self._judge_pool().judge, code, text, compare))
        return JudgeResult(
            cases=[CaseResult(**{k: c[k] for k in _CASE_FIELDS}) for c in out["cases"]],
            passed=out["passed"],
            total=out["total"],
            compile_error=out.get("compile_error"),
        )

    def _judge_pool(self) -> Any:
        if self._warm is not None and self._warm.gives_stdin:
            return self._warm
        with self._judge_lock:
            if self._pool.closed:
                raise SandboxError("the sandbox is closed")
            if self._judge is None:
                policy = json.dumps(self.config.to_policy())
                start = functools.partial(_native.WarmPool, judge=True)
                self._judge = _warm_call(start, helper_binary(), policy, self._workers)
                _WARM.add(self._judge)
            return self._judge

    # asyncio -------------------------------------------------------------------------------

    async def aexecute(self, code: str, globals: Optional[Dict[str, Any]] = None,
                       locals: Optional[Dict[str, Any]] = None, *, stdin: Optional[str] = None) -> Result:  # fmt: skip
        """:meth:`execute` for asyncio: the run happens in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, functools.partial(self.execute, code, globals, locals, stdin=stdin)
        )

    async def aeval(self, expression: str, globals: Optional[Dict[str, Any]] = None,
                    locals: Optional[Dict[str, Any]] = None) -> Any:  # fmt: skip
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.eval, expression, globals, locals)

    async def acall(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.call, func, *args, **kwargs))

    async def ajudge(self, code: str, cases: Sequence[Mapping[str, Any]],
                     compare: str = "exact") -> JudgeResult:  # fmt: skip
        """:meth:`judge` for asyncio."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.judge, code, cases, compare))

    # Lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the helper processes (also done at exit)."""
        with self._judge_lock:
            self._pool.close()
        if self._warm is not None:
            self._warm.close()
        if self._judge is not None:
            self._judge.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The work ------------------------------------------------------------------------------

    def _run(self, op: str, code: str, data: Dict[str, Any], stdin: Optional[str],
             files: Optional[List[Any]] = None, collect: Optional[List[str]] = None,
             cell: bool = False) -> Result:  # fmt: skip
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        if self._warm is not None:
            # One native call: the data encoded, the outcome and the decoded result back.
            o, payload, has_result, too_big = _warm_call(
                self._warm.call, op, code, stdin, data, self.config.max_result, files,
                collect, cell)  # fmt: skip
            # ``payload`` is None without a result, and when the result decoded to None.
            return self._finish(o, payload if has_result and not too_big else {}, has_result,
                                too_big)  # fmt: skip
        # Each value as tagged JSON text (the native codec), spliced into the request as is.
        pairs = ",".join(
            "[%s,%s]" % (json.dumps(key), _native.encode(value, key)) for key, value in data.items()
        )
        data_in = '{"d":[%s]}' % pairs
        request = {
            "policy": self.config.to_policy(),
            "op": op,
            "code": code,
            "stdin": stdin,
            "input": json.loads(data_in),
            "result_max": self.config.max_result,
            "files": {name: base64.b64encode(content).decode() for name, content in files or ()},
            "collect": collect or [],
            "cell": cell,
        }
        helper = self._pool.acquire()
        healthy = False
        try:
            resp = helper.request(request)
            healthy = not resp.get("anomaly")
        finally:
            self._pool.release(helper, healthy)
        return self._result(resp)

    def session(self, idle_timeout: float = 300.0, lifetime: float = 3600.0) -> "Session":
        """A stateful session, like a notebook: variables stay between calls.

        Each call has the configuration's time limits; memory is limited for the whole session;
        a tripped limit ends it. It closes after ``idle_timeout`` seconds without calls, and
        ``lifetime`` seconds after it opened, whatever it does. Between calls nothing of it runs
        (threads and processes a call left behind are stopped until the next call).

        >>> with Sandbox().session() as s:
        ...     _ = s.execute("x = 20")
        ...     s.execute("print(x + 1)").stdout
        '21\\n'
        """
        return Session(self.config, idle_timeout, lifetime)

    def _result(self, resp: Dict[str, Any]) -> Result:
        if not resp.get("ok"):
            err = resp.get("error") or {}
            message = str(err.get("message", "unknown error"))
            if err.get("kind") == "policy":
                raise PolicyError(message)
            raise SandboxError(f"the sandbox could not run the code: {message}")
        o = resp["outcome"]
        if resp.get("report_error"):
            raise MalformedResult("the sandbox returned malformed data: its report did not "
                                  f"decode ({resp['report_error']})")  # fmt: skip
        payload: Any = {}
        if resp.get("result") is not None and not resp.get("result_truncated"):
            try:
                payload = _native.decode(resp["result"])
            except ValueError as e:
                raise MalformedResult(f"the sandbox returned malformed data: {e}") from None
        return self._finish(o, payload, resp.get("result") is not None,
                            bool(resp.get("result_truncated")))  # fmt: skip

    def _finish(self, o: Dict[str, Any], payload: Any, has_result: bool,
                too_big: bool) -> Result:  # fmt: skip
        payload = _checked(payload)
        result = Result(
            stdout=o["stdout"],
            stderr=o["stderr"],
            stdout_truncated=o["stdout_truncated"],
            stderr_truncated=o["stderr_truncated"],
            cpu_time=o["cpu_time"],
            wall_time=o["wall_time"],
            peak_memory=o["peak_memory"],
            exit_code=o["exit_code"] if "exit" not in payload else int(payload["exit"]),
            value=payload.get("value"),
            globals=payload.get("globals") or {},
            locals=payload.get("locals"),
            # The API path catches the code's sys.exit(n) and ends normally: n is the code's.
            status=(("error" if int(payload["exit"]) else "ok") if "exit" in payload
                    else str(o.get("status") or "ok")),  # fmt: skip
            limit=o.get("limit"),
            signal=o.get("signal"),
            results=[DisplayResult(dict(r.get("data") or {}), bool(r.get("is_main_result")))
                     for r in o.get("results") or ()],  # fmt: skip
            files={str(k): base64.b64decode(v) for k, v in (o.get("files") or {}).items()},
            files_truncated=bool(o.get("files_truncated")),
        )
        self._raise_for(o, payload, result, has_result, too_big)
        return result

    def _raise_for(self, o: Dict[str, Any], payload: Dict[str, Any], result: Result,
                   has_result: bool, too_big: bool) -> None:  # fmt: skip
        c = self.config
        limit = o.get("limit")
        if limit == "wall":
            raise Timeout(
                f"the code ran longer than its time limit ({c.timeout} s); raise it with "
                "SandboxConfig(timeout=...)", "wall", result)
        if limit == "cpu":
            raise Timeout(
                f"the code used more CPU time than its limit ({c.cpu_time} s); raise it with "
                "SandboxConfig(cpu_time=...)", "cpu", result)
        if limit == "memory":
            raise MemoryLimitExceeded(
                f"the code needed more memory than its limit ({c.max_memory} MB); raise it "
                "with SandboxConfig(max_memory=...)", "memory", result)
        if limit == "processes":
            raise ProcessLimitExceeded(
                "the code started more processes or threads than allowed; raise the limit "
                "with SandboxConfig(processes=...) or enable the 'threads' feature",
                "processes", result)
        if limit in ("file_size", "tmp_size", "open_files"):
            raise LimitExceeded(
                f"the code hit the {limit} limit; raise it with SandboxConfig({limit}=...)",
                limit, result)
        if too_big:
            raise OutputLimitExceeded(
                f"the value returned by the code is larger than {c.max_result} bytes; raise "
                "it with SandboxConfig(max_result=...)", "output", result)
        if o.get("signal") is not None:
            n = o["signal"]
            why = " (a forbidden system call)" if n == _signal.SIGSYS else ""
            raise SandboxCrashed(
                f"the sandboxed interpreter was killed by {_signal_name(n)}{why}", n)
        if "error" in payload:
            e = payload["error"]
            raise SandboxedException(e["type"], e["message"], e["traceback"])
        if not has_result:
            raise SandboxError(
                f"the code ended (exit status {o.get('exit_code')}) before returning a result"
                + (f": {o['stderr'].strip()}" if o.get("stderr") else ""))


class Session:
    """A stateful sandbox session (see :meth:`Sandbox.session`)."""

    def __init__(self, config: SandboxConfig, idle_timeout: float = 300.0,
                 lifetime: float = 3600.0) -> None:  # fmt: skip
        self.config = config
        self._ended: Optional[str] = None
        self._native: Optional[Any] = _warm_call(
            _native.WarmSession, helper_binary(), json.dumps(config.to_policy()),
            float(idle_timeout), float(lifetime))  # fmt: skip
        _WARM.add(self._native)
        self._checker = Sandbox(config)

    def execute(self, code: str, *, stdin: Optional[str] = None,
                files: Optional[Dict[str, Any]] = None,
                collect: Optional[List[str]] = None, mode: str = "script") -> Result:  # fmt: skip
        """Run ``code`` in the session's namespace (its working directory is kept between calls;
        ``files``, ``collect`` and ``mode`` as in :meth:`Sandbox.execute`)."""
        if self._native is None:
            raise SandboxError(f"the session has ended: {self._ended}")
        request = {"code": code, "stdin": stdin, "collect": _globs(collect) or [],
                   "mode": "cell" if _cell(mode) else "script",
                   "files": {n: base64.b64encode(c).decode() for n, c in _files(files) or ()}}  # fmt: skip
        try:
            resp = json.loads(_warm_call(self._native.execute, json.dumps(request)))
        except SandboxError as e:
            self.close(str(e).replace("the session has ended: ", "", 1))
            raise
        if resp.get("ended"):
            self.close("a limit or a crash ended it")
        conv = _from_warm(resp, self.config.max_result)
        conv["result"] = conv.get("result") or "{\"d\": []}"
        result = self._checker._result(conv)
        error = resp.get("error")
        if resp.get("exit_code") and not resp.get("ended") and error:
            # An exception in a session call (the bootstrap's account of it, not a guess from
            # stderr: code may write there and exit): the session lives on, the caller hears.
            raise SandboxedException(str(error.get("type", "")), str(error.get("message", "")),
                                     str(error.get("traceback", "")))  # fmt: skip
        return result

    def close(self, why: Optional[str] = None) -> None:
        if self._native is not None:
            self._native.close()
            self._native = None
            self._ended = why or "closed"

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

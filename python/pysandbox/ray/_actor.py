"""SandboxActor: a Ray actor holding a warm pool (the package's :class:`Sandbox` with
``pool=True``) on its node, with K slots: K runs at once, each in a fresh isolated child."""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import ray

from .._config import SandboxConfig
from .._errors import SandboxError
from .._sandbox import JudgeResult, Result, Sandbox, Session
from ._node import kernel_features, kernel_problems

#: What ``Sandbox.execute`` takes besides the code: a request is ``{"code": ..., **these}``.
REQUEST_KEYS = ("code", "globals", "locals", "stdin", "files", "collect", "mode")

Request = Union[str, Mapping[str, Any]]


def request_dict(request: Request, where: str = "request") -> Dict[str, Any]:
    """A request as ``{"code": ..., **keyword arguments of Sandbox.execute}``: a str is code
    alone. TypeError/ValueError (naming ``where``) for anything else, before anything runs."""
    if isinstance(request, str):
        return {"code": request}
    if not isinstance(request, Mapping):
        raise TypeError(f"{where}: a request is code (str) or a dict such as "
                        f"{{'code': 'print(1)', 'stdin': '...'}}, got {type(request).__name__}")  # fmt: skip
    unknown = sorted(set(request) - set(REQUEST_KEYS), key=str)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (a request takes "
                         f"{', '.join(REQUEST_KEYS)})")  # fmt: skip
    if not isinstance(request.get("code"), str):
        raise TypeError(f"{where}: 'code' must be a str, got {type(request.get('code')).__name__}")
    return dict(request)


def _run(sandbox: Sandbox, request: Request) -> Result:
    req = request_dict(request)
    code = req.pop("code")
    return sandbox.execute(code, req.pop("globals", None), req.pop("locals", None), **req)


def _settle(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or the exception it raised (a batch's item: nothing is dropped)."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - any failure is that item's answer
        return e


class _SandboxActor:
    """The actor's body (``SandboxActor`` is this class under ``ray.remote``).

    At start it checks the node's kernel (user namespaces, seccomp, Landlock) and runs a probe
    through its warm pool; it refuses to become ready otherwise: the constructor raises
    :class:`SandboxError` with the reason, which Ray reports on every call to the actor.
    """

    def __init__(self, config: Optional[SandboxConfig] = None, slots: Optional[int] = None,
                 check_kernel: bool = True) -> None:  # fmt: skip
        self.config = config if config is not None else SandboxConfig()
        self.features = kernel_features()
        problems = kernel_problems(self.features) if check_kernel else []
        self.node_id = ray.get_runtime_context().get_node_id()
        where = f"node {self.node_id[:12]} ({os.uname().nodename})"
        if problems:
            raise SandboxError(f"the sandbox cannot run on {where}: " + "; ".join(problems))
        self.slots = int(slots or os.cpu_count() or 1)
        try:
            self.sandbox = Sandbox(self.config, pool=True, workers=self.slots)
            probe = self.sandbox.eval("6 * 7")
        except SandboxError as e:
            raise SandboxError(f"the sandbox cannot run on {where}: {e}") from None
        if probe != 42:
            raise SandboxError(f"the sandbox cannot run on {where}: a probe gave {probe!r}")
        # Two threads per slot: while a run goes on, the next request is already queued on the
        # warm pool (its Python side, encoding and decoding, overlaps the run).
        self.executor = ThreadPoolExecutor(2 * self.slots, thread_name_prefix="pysandbox-slot")
        self.sessions: Dict[int, Session] = {}
        self.session_ids = itertools.count(1)
        self.lock = threading.Lock()
        self.served = 0
        #: Batch calls running now, and the most at once (the pool bounds it: back-pressure).
        self.calls = 0
        self.peak_calls = 0

    def _count(self, n: int) -> None:
        with self.lock:
            self.served += n

    def _batch(self, fn: Any, items: Sequence[Any]) -> List[Any]:
        """``fn(*item)`` for every item, over the slots; answers in order."""
        with self.lock:
            self.calls += 1
            self.peak_calls = max(self.peak_calls, self.calls)
        try:
            futures = [self.executor.submit(_settle, fn, *item) for item in items]
            out = [f.result() for f in futures]
        finally:
            with self.lock:
                self.calls -= 1
        self._count(len(out))
        return out

    def info(self) -> Dict[str, Any]:
        """Where it runs and what it did: node id, pid, slots, runs served, the kernel's features
        and the warm pool's worker processes."""
        warm = self.sandbox._warm
        return {
            "node_id": self.node_id,
            "pid": os.getpid(),
            "slots": self.slots,
            "served": self.served,
            "peak_calls": self.peak_calls,
            "sessions": len(self.sessions),
            "kernel": self.features,
            "worker_pids": list(warm.worker_pids()) if warm is not None else [],
        }

    ready = info

    # Fresh runs ------------------------------------------------------------------------------

    def execute(self, request: Request) -> Result:
        """One request (code, or a dict of ``Sandbox.execute``'s arguments): its Result, or
        the package's exception as ``Sandbox.execute`` raises it."""
        self._count(1)
        return _run(self.sandbox, request)

    def execute_many(self, requests: Sequence[Request]) -> List[Union[Result, Exception]]:
        """Many requests in one call, spread over the slots; results in order, each a Result or
        the exception that request raised."""
        return self._batch(_run, [(self.sandbox, r) for r in requests])

    def judge(self, code: str, cases: Sequence[Mapping[str, Any]],
              compare: str = "exact") -> JudgeResult:  # fmt: skip
        """``Sandbox.judge``: the program against every case, the cases spread over the slots."""
        self._count(1)
        return self.sandbox.judge(code, cases, compare)

    def judge_many(self, items: Sequence[Tuple[str, Sequence[Mapping[str, Any]], str]]
                   ) -> List[Union[JudgeResult, Exception]]:  # fmt: skip
        """Many ``(code, cases, compare)`` in one call; a JudgeResult (or exception) each, in order."""
        return self._batch(self.sandbox.judge, items)

    # Sessions ---------------------------------------------------------------------------------

    def session_open(self, idle_timeout: float = 300.0, lifetime: float = 3600.0) -> int:
        session = self.sandbox.session(idle_timeout, lifetime)
        with self.lock:
            sid = next(self.session_ids)
            self.sessions[sid] = session
        return sid

    def session_execute(self, sid: int, request: Request) -> Result:
        with self.lock:
            session = self.sessions.get(sid)
        if session is None:
            raise SandboxError(f"no session {sid} on this actor (closed)")
        req = request_dict(request)
        for key in ("globals", "locals"):
            if req.pop(key, None) is not None:
                raise ValueError(f"a session keeps its own namespace: '{key}' is not taken")
        self._count(1)
        return session.execute(req.pop("code"), **req)

    def session_close(self, sid: int) -> None:
        with self.lock:
            session = self.sessions.pop(sid, None)
        if session is not None:
            session.close()

    def close(self) -> None:
        """Stop the warm pool and the sessions (the actor can then be killed)."""
        with self.lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for s in sessions:
            s.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.sandbox.close()


#: The Ray actor. ``SandboxActor.remote(config, slots=K)``; each call is a method's ``.remote``.
#: Threaded (several calls at once: a batch's slots are its own threads), not restarted by Ray
#: (:class:`SandboxPool` replaces a dead actor and retries its runs itself).
SandboxActor = ray.remote(max_concurrency=64, max_restarts=0)(_SandboxActor)

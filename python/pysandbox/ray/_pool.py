"""SandboxPool: sandbox actors spread over a Ray cluster's nodes, and the batch engine that
feeds them (chunks, bounded in flight, a dead actor replaced and its runs retried once)."""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .._config import SandboxConfig
from .._errors import SandboxError
from .._sandbox import JudgeResult, Result, _cases_json
from ._actor import Request, SandboxActor, request_dict


def _cause(e: BaseException) -> str:
    """A Ray failure in one line (Ray's messages run to dozens of lines)."""
    text = str(e).strip()
    # An actor that refused to start: the reason is the traceback's last line.
    for line in text.splitlines():
        if line.startswith("pysandbox._errors.SandboxError: "):
            return line.split(": ", 1)[1].strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first[:300]}"


@dataclass
class _Actor:
    """One actor of the pool as the driver sees it."""

    handle: Any
    node_id: str
    ready: Any  # the ObjectRef of its ready() call, None once known ready
    started: float
    load: int = 0
    info: Dict[str, Any] = field(default_factory=dict)
    dead: Optional[str] = None


@dataclass
class _Chunk:
    start: int
    items: List[Any]
    attempt: int = 0
    first_failure: str = ""


class SandboxPool:
    """Sandbox actors (:class:`SandboxActor`) spread over the cluster's nodes.

    ``SandboxPool(config, actors=4, slots_per_actor=8)``: ``actors`` defaults to one per alive
    node that can hold one, ``slots_per_actor`` to the node's CPUs. Each actor is pinned to a
    node, round-robin over the nodes that have the resources it asks (``num_cpus``,
    ``resources``, e.g. ``{"sandbox": 1}`` for a custom resource only sandbox nodes advertise):
    Ray's SPREAD hint alone may put every actor on one node.

    A request is what ``Sandbox.execute`` takes: code (a str) or a dict ``{"code": ...,
    "stdin": ..., "globals": ..., "locals": ..., "files": ..., "collect": ..., "mode": ...}``.
    Batch answers are each a :class:`Result` or the exception that request gave (a
    :class:`SandboxError` subclass such as ``SandboxedException`` or ``Timeout``, as
    ``Sandbox.execute`` raises them): nothing is dropped.

    Faults: an actor that dies (its process killed, its node lost) is replaced on a node that
    can hold it; the runs it held are retried once on another actor and then answered with a
    SandboxError naming the cause. At most ``max_inflight`` calls per actor are outstanding
    (back-pressure: the rest wait in the driver).
    """

    def __init__(self, config: Optional[SandboxConfig] = None, actors: Optional[int] = None,
                 slots_per_actor: Optional[int] = None, *, num_cpus: float = 1,
                 resources: Optional[Dict[str, float]] = None, max_inflight: int = 2,
                 ready_timeout: float = 120.0, max_replacements: int = 8,
                 actor_options: Optional[Dict[str, Any]] = None) -> None:  # fmt: skip
        if not ray.is_initialized():
            ray.init()
        self.config = config if config is not None else SandboxConfig()
        self.slots_per_actor = slots_per_actor
        self._demand = {"CPU": float(num_cpus), **{k: float(v) for k, v in (resources or {}).items()}}
        self._options = dict(actor_options or {}, num_cpus=num_cpus, resources=dict(resources or {}))
        self.max_inflight = max(1, int(max_inflight))
        self.ready_timeout = ready_timeout
        self._replacements_left = max_replacements
        self._lock = threading.RLock()
        self._actors: List[_Actor] = []
        #: Why actors died or refused to start (``(node_id, cause)``), oldest first.
        self.failures: List[Tuple[str, str]] = []
        self._submitted: Deque[Any] = deque()
        self._closed = False
        nodes = self._nodes()
        if not nodes:
            raise SandboxError(f"no alive node of the cluster has the resources a sandbox actor "
                               f"asks ({self._demand}): add nodes or lower num_cpus/resources")  # fmt: skip
        count = len(nodes) if actors is None else int(actors)
        if count < 1:
            raise ValueError(f"actors must be at least 1, got {actors}")
        for i in range(count):
            self._start(nodes[i % len(nodes)])
        self._await_ready()

    # Placement ---------------------------------------------------------------------------------

    def _nodes(self) -> List[str]:
        """Alive nodes whose total resources can hold an actor, in a stable order."""
        out = []
        for node in ray.nodes():
            have = node.get("Resources") or {}
            if node.get("Alive") and all(have.get(k, 0.0) >= v for k, v in self._demand.items()):
                out.append(node["NodeID"])
        return sorted(out)

    def _start(self, node_id: str) -> _Actor:
        handle = SandboxActor.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            **self._options,
        ).remote(self.config, self.slots_per_actor)
        actor = _Actor(handle, node_id, handle.ready.remote(), time.monotonic())
        self._actors.append(actor)
        return actor

    def _await_ready(self) -> None:
        pending = {a.ready: a for a in self._actors if a.ready is not None}
        deadline = time.monotonic() + self.ready_timeout
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending),
                               timeout=max(0.0, deadline - time.monotonic()))  # fmt: skip
            for ref in done:
                self._settle_ready(pending.pop(ref), ref)
            if not done:
                for a in pending.values():
                    why = f"not ready after {self.ready_timeout} s (no room on its node?)"
                    self._lost(a, why, replace=False)
                break
        live = [a for a in self._actors if a.dead is None]
        if not live:
            self.shutdown()
            why = "; ".join(c for _, c in self.failures) or "unknown"
            raise SandboxError(f"no sandbox actor became ready: {why}")
        if len(live) < len(self._actors):
            warnings.warn(f"{len(self._actors) - len(live)} sandbox actor(s) refused to start: "
                          + "; ".join(c for _, c in self.failures), RuntimeWarning, stacklevel=3)  # fmt: skip
            self._actors = live

    def _settle_ready(self, actor: _Actor, ref: Any) -> None:
        try:
            actor.info = ray.get(ref)
            actor.ready = None
        except RayError as e:
            self._lost(actor, _cause(e), replace=False)

    def _lost(self, actor: _Actor, cause: str, replace: bool = True) -> None:
        """Mark ``actor`` dead (once), kill what is left of it, start a replacement."""
        with self._lock:
            if actor.dead is not None:
                return
            actor.dead = cause
            self.failures.append((actor.node_id, cause))
            self._actors = [a for a in self._actors if a is not actor]
            try:
                ray.kill(actor.handle, no_restart=True)
            except RayError:
                pass
            if not replace or self._closed or self._replacements_left <= 0:
                return
            nodes = self._nodes()
            if not nodes:
                return
            self._replacements_left -= 1
            per_node = {n: sum(a.node_id == n for a in self._actors) for n in nodes}
            # Its own node if still there, else the node with the fewest actors.
            node = actor.node_id if actor.node_id in per_node else min(nodes, key=per_node.__getitem__)
            self._start(node)

    def _recent_failures(self) -> str:
        return "; ".join(c for _, c in self.failures[-3:]) or "none started"

    def _free(self) -> Optional[_Actor]:
        """The least loaded ready actor with room for another call, if any."""
        ready = [a for a in self._actors if a.ready is None and a.dead is None and a.load < self.max_inflight]
        return min(ready, key=lambda a: a.load) if ready else None

    # The batch engine ----------------------------------------------------------------------------

    def _stream(self, method: str, items: List[Any], chunk: Optional[int]) -> Iterator[Tuple[int, Any]]:
        """``(index, answer)`` for every item, in completion order: ``method`` of the actors on
        chunks of ``items``; a chunk whose actor died is retried once on another actor."""
        if self._closed:
            raise SandboxError("the pool is shut down")
        if not items:
            return
        calls = 2 * self.max_inflight * max(1, len(self._actors))
        size = chunk or max(1, min(64, math.ceil(len(items) / calls)))
        queue: Deque[_Chunk] = deque(_Chunk(s, items[s:s + size]) for s in range(0, len(items), size))
        inflight: Dict[Any, Tuple[_Actor, _Chunk]] = {}
        while queue or inflight:
            while queue:
                actor = self._free()
                if actor is None:
                    break
                c = queue.popleft()
                inflight[getattr(actor.handle, method).remote(c.items)] = (actor, c)
                actor.load += 1
            starting = {a.ready: a for a in self._actors if a.ready is not None}
            if not inflight and not starting:
                # Nothing runs and nothing is coming: every actor is gone.
                why = "; ".join(c for _, c in self.failures[-3:]) or "no actor"
                while queue:
                    c = queue.popleft()
                    for i in range(len(c.items)):
                        yield c.start + i, SandboxError(
                            f"no sandbox actor is alive to run this request: {why}")
                return
            self._expire(starting)
            done, _ = ray.wait(list(inflight) + list(starting), num_returns=1, timeout=1.0)
            for ref in done:
                if ref in starting:
                    self._settle_ready(starting[ref], ref)
                    continue
                actor, c = inflight.pop(ref)
                actor.load -= 1
                try:
                    answers = ray.get(ref)
                except RayActorError as e:
                    cause = _cause(e)
                    self._lost(actor, cause)
                    if c.attempt == 0:
                        queue.appendleft(_Chunk(c.start, c.items, 1, cause))
                        continue
                    msg = (f"the sandbox actor running this request died ({c.first_failure}), "
                           f"and so did the one it was retried on ({cause})")  # fmt: skip
                    answers = [SandboxError(msg)] * len(c.items)
                except RayError as e:
                    answers = [SandboxError(f"the sandbox actor failed: {_cause(e)}")] * len(c.items)
                for i, answer in enumerate(answers):
                    yield c.start + i, answer

    def _expire(self, starting: Dict[Any, _Actor]) -> None:
        now = time.monotonic()
        for ref, actor in list(starting.items()):
            if now - actor.started > self.ready_timeout:
                del starting[ref]
                self._lost(actor, f"a replacement was not ready after {self.ready_timeout} s", replace=False)

    # The API ------------------------------------------------------------------------------------

    def map(self, requests: Sequence[Request], chunk: Optional[int] = None) -> List[Union[Result, Exception]]:
        """Run every request (each in a fresh sandbox); the answers in the requests' order, each a
        Result or that request's exception. ``chunk``: requests per actor call (default: enough
        chunks to keep every actor busy, at most 64 each)."""
        items = [request_dict(r, f"requests[{i}]") for i, r in enumerate(requests)]
        out: List[Any] = [None] * len(items)
        for i, answer in self._stream("execute_many", items, chunk):
            out[i] = answer
        return out

    def map_unordered(self, requests: Sequence[Request], chunk: Optional[int] = None
                      ) -> Iterator[Tuple[int, Union[Result, Exception]]]:  # fmt: skip
        """As :meth:`map`, but ``(index, answer)`` pairs as they complete."""
        items = [request_dict(r, f"requests[{i}]") for i, r in enumerate(requests)]
        return self._stream("execute_many", items, chunk)

    def judge_many(self, programs: Sequence[str], cases: Sequence[Any], compare: str = "exact",
                   chunk: Optional[int] = None) -> List[Union[JudgeResult, Exception]]:  # fmt: skip
        """Judge every program (``Sandbox.judge``): ``cases`` is one list of ``{"stdin",
        "expected"}`` dicts for all programs, or one such list per program. One JudgeResult
        (``passed``/``total``, a verdict per case) or exception per program, in order."""
        programs = list(programs)
        for i, p in enumerate(programs):
            if not isinstance(p, str):
                raise TypeError(f"programs[{i}]: a program is code (str), got {type(p).__name__}")
        def is_list(x: Any) -> bool:
            return isinstance(x, Sequence) and not isinstance(x, (str, bytes, Mapping))

        per_program = is_list(cases) and len(cases) > 0 and all(is_list(c) for c in cases)
        if per_program:
            if len(cases) != len(programs):
                raise ValueError(f"cases: one list per program expected ({len(programs)}), "
                                 f"got {len(cases)} lists")  # fmt: skip
            lists = [list(c) for c in cases]
        else:
            lists = [list(cases)] * len(programs)
        for i, c in enumerate(lists if per_program else lists[:1]):
            try:
                _cases_json(c)
            except TypeError as e:
                raise TypeError(f"cases[{i}]: {e}" if per_program else str(e)) from None
        items = [(p, c, compare) for p, c in zip(programs, lists)]
        out: List[Any] = [None] * len(items)
        for i, answer in self._stream("judge_many", items, chunk):
            out[i] = answer
        return out

    def submit(self, request: Request) -> Any:
        """One request on the least loaded actor: an ObjectRef of its Result (``ray.get`` raises
        the request's exception). If the actor dies, the run is retried once on another.
        Blocks while every actor has ``max_inflight`` submitted runs per slot outstanding."""
        req = request_dict(request)
        with self._lock:
            bound = self.max_inflight * sum((a.info.get("slots") or 1) for a in self._actors) or 1
            while len(self._submitted) >= bound:
                ray.wait([self._submitted.popleft()], num_returns=1)
            live = sorted((a for a in self._actors if a.ready is None), key=lambda a: a.load)
            if not live:
                raise SandboxError("no sandbox actor is alive: " + self._recent_failures())
            ref = _submit_task.remote([a.handle for a in live[:2]], req)
            self._submitted.append(ref)
        return ref

    def session(self, idle_timeout: float = 300.0, lifetime: float = 3600.0) -> "PoolSession":
        """A stateful session (``Sandbox.session``) on one actor, the least loaded."""
        actor = self._free() or next((a for a in self._actors if a.ready is None), None)
        if actor is None:
            raise SandboxError("no sandbox actor is alive: " + self._recent_failures())
        try:
            sid = ray.get(actor.handle.session_open.remote(idle_timeout, lifetime))
        except RayActorError as e:
            self._lost(actor, _cause(e))
            raise SandboxError(f"the session could not open: its actor died ({_cause(e)})") from None
        except RayTaskError as e:
            raise e.cause from None
        return PoolSession(self, actor, sid)

    def actors_info(self) -> List[Dict[str, Any]]:
        """Each live actor's :meth:`SandboxActor.info`: node id, pid, slots, runs served, ...
        An actor found dead here is replaced (as in a batch)."""
        live = [a for a in self._actors if a.ready is None]
        refs = [a.handle.info.remote() for a in live]
        out = []
        for actor, ref in zip(live, refs):
            try:
                actor.info = ray.get(ref)
                out.append(actor.info)
            except RayActorError as e:
                self._lost(actor, _cause(e))
        return out

    @property
    def actors(self) -> List[Any]:
        """The live actors' handles."""
        return [a.handle for a in self._actors if a.ready is None]

    def shutdown(self, timeout: float = 10.0) -> None:
        """Close every actor's warm pool and kill the actors."""
        with self._lock:
            self._closed = True
            actors, self._actors = self._actors, []
        if not actors or not ray.is_initialized():
            return
        refs = [a.handle.close.remote() for a in actors]
        try:
            ray.wait(refs, num_returns=len(refs), timeout=timeout)
        except RayError:
            pass
        for a in actors:
            try:
                ray.kill(a.handle, no_restart=True)
            except RayError:
                pass

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


@ray.remote(num_cpus=0, max_retries=0)
def _submit_task(handles: List[Any], request: Dict[str, Any]) -> Result:
    """One submitted run: on the first actor, on the second if the first died."""
    causes = []
    for handle in handles:
        try:
            return ray.get(handle.execute.remote(request))
        except RayActorError as e:
            causes.append(_cause(e))
        except RayTaskError as e:
            raise e.cause from None
    raise SandboxError("the sandbox actor running this request died"
                       + (", and so did the one it was retried on" if len(causes) > 1 else "")
                       + ": " + "; ".join(causes))  # fmt: skip


class PoolSession:
    """A session pinned to one actor of a :class:`SandboxPool` (its state lives there)."""

    def __init__(self, pool: SandboxPool, actor: _Actor, sid: int) -> None:
        self._pool = pool
        self._actor = actor
        self._sid = sid
        self.node_id = actor.node_id

    def execute(self, code: str, **kwargs: Any) -> Result:
        """``Session.execute`` on the actor: ``stdin``, ``files``, ``collect``, ``mode``."""
        if self._sid is None:
            raise SandboxError("the session is closed")
        try:
            return ray.get(self._actor.handle.session_execute.remote(self._sid, dict(kwargs, code=code)))
        except RayActorError as e:
            self._pool._lost(self._actor, _cause(e))
            self._sid = None
            raise SandboxError(f"the session was lost: its sandbox actor died ({_cause(e)})") from None
        except RayTaskError as e:
            raise e.cause from None

    def close(self) -> None:
        if self._sid is not None:
            sid, self._sid = self._sid, None
            try:
                ray.get(self._actor.handle.session_close.remote(sid))
            except RayError:
                pass

    def __enter__(self) -> "PoolSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

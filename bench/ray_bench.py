"""SandboxPool.map on a local two-node Ray cluster against the local warm pool, in the same run.

    python bench/ray_bench.py [N]     # N requests per row (default 2000); `make bench-ray`

The same N fresh runs (``print(i * i)``, each in its own isolated child) go through:
  - ``pysandbox batch --workers W`` (the local warm pool, JSON lines in and out),
  - ``Sandbox(pool=True, workers=W)`` from 2W threads (the package's local warm pool),
  - ``SandboxPool.map`` with the same W warm workers in total, spread over the actors of a
    two-node ``ray.cluster_utils.Cluster`` on this machine, for several chunk sizes.
W is the number of CPUs. Then the per-call overhead: the latency of one run through
``SandboxPool.submit`` and through an actor's ``execute`` against a local ``Sandbox.execute``,
and a Ray round trip that runs nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import ray
from ray.cluster_utils import Cluster

from pysandbox import Sandbox, SandboxConfig, helper_binary
from pysandbox.ray import SandboxPool


def code(i: int) -> str:
    return f"print({i} * {i})"


def check(outs, n):
    bad = [i for i, r in enumerate(outs) if getattr(r, "stdout", None) != f"{i * i}\n"]
    assert not bad, f"{len(bad)} wrong answers, e.g. #{bad[0]}: {outs[bad[0]]!r}"


def batch_rate(n: int, workers: int) -> float:
    lines = "".join(json.dumps({"id": i, "code": code(i)}) + "\n" for i in range(n)).encode()
    start = time.perf_counter()
    out = subprocess.run([helper_binary(), "batch", "--workers", str(workers)], input=lines,
                         capture_output=True, check=True).stdout  # fmt: skip
    elapsed = time.perf_counter() - start
    answers = {a["id"]: a["stdout"] for a in map(json.loads, out.splitlines())}
    assert all(answers[i] == f"{i * i}\n" for i in range(n)), "pysandbox batch: wrong answers"
    return n / elapsed


def sandbox_rate(n: int, workers: int) -> float:
    with Sandbox(SandboxConfig(), pool=True, workers=workers) as s:
        s.execute("pass")
        with ThreadPoolExecutor(2 * workers) as ex:
            start = time.perf_counter()
            outs = list(ex.map(s.execute, [code(i) for i in range(n)]))
            elapsed = time.perf_counter() - start
    check(outs, n)
    return n / elapsed


def latency(fn, rounds: int = 200) -> float:
    """Median seconds of ``fn()`` after a warm-up."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(n: int = 2000) -> None:
    workers = os.cpu_count() or 2
    print(f"{n} fresh runs per row, {workers} warm workers in total (this machine's CPUs)\n")
    rows = []
    local_batch = batch_rate(n, workers)
    rows.append(("pysandbox batch (local warm pool)", local_batch))
    rows.append((f"Sandbox(pool=True), {2 * workers} threads", sandbox_rate(n, workers)))

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"sandbox": 4}, "include_dashboard": False})  # fmt: skip
    cluster.add_node(num_cpus=1, resources={"sandbox": 4})
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        layouts = [(2, max(1, workers // 2)), (1, workers)]
        for actors, slots in layouts:
            with SandboxPool(SandboxConfig(), actors=actors, slots_per_actor=slots, num_cpus=0,
                             resources={"sandbox": 1}) as pool:  # fmt: skip
                nodes = len({i["node_id"] for i in pool.actors_info()})
                pool.map([code(i) for i in range(200)])  # warm
                for chunk in (1, 8, 64, None):
                    start = time.perf_counter()
                    outs = pool.map([code(i) for i in range(n)], chunk=chunk)
                    rate = n / (time.perf_counter() - start)
                    check(outs, n)
                    label = (f"SandboxPool.map {actors} actor(s) x {slots} slots on {nodes} "
                             f"node(s), chunk {chunk or 'auto'}")
                    rows.append((label, rate))
                if actors == 1:
                    sandbox = Sandbox(SandboxConfig(), pool=True, workers=slots)
                    actor = pool.actors[0]
                    lat_local = latency(lambda: sandbox.execute("pass"))
                    lat_actor = latency(lambda: ray.get(actor.execute.remote("pass")))
                    lat_submit = latency(lambda: ray.get(pool.submit("pass")))
                    lat_noop = latency(lambda: ray.get(actor.info.remote()))
                    sandbox.close()
        width = max(len(r[0]) for r in rows)
        print(f"{'':{width}}  runs/s   x batch")
        for label, rate in rows:
            print(f"{label:{width}}  {rate:6.0f}   {rate / local_batch:5.2f}x")
        print("\nper-call latency (median of 200, one run of `pass`):")
        print(f"  local Sandbox.execute (warm)      {lat_local * 1e3:6.2f} ms")
        print(f"  actor.execute.remote + ray.get    {lat_actor * 1e3:6.2f} ms  "
              f"({(lat_actor - lat_local) * 1e3:+.2f} ms: the Ray call)")  # fmt: skip
        print(f"  SandboxPool.submit + ray.get      {lat_submit * 1e3:6.2f} ms  (a task routes it)")
        print(f"  Ray round trip, no run (info)     {lat_noop * 1e3:6.2f} ms")
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)

"""Score model-written solutions the way an RL reward function does, on Ray.

    python examples/rl_reward.py [N]          # N solutions (default 1000), a local Ray
    RAY_ADDRESS=auto python examples/rl_reward.py   # on a running cluster, one actor per node

The problems (examples/problems.json, shipped here) each have test cases and solutions of four
kinds, as a policy model samples them: correct, wrong (a wrong answer on some cases), slow (too
slow for the time limit on some case) and crash (an exception on some case, or nothing). N
"rollouts" are drawn from them (a comment makes each one distinct text), judged with
``SandboxPool.judge_many`` (every program against its problem's cases, each case in a fresh
sandbox on a warm worker), and rewarded with the fraction of cases passed.
"""

from __future__ import annotations

import collections
import json
import os
import random
import sys
import time

import ray

from pysandbox import SandboxConfig
from pysandbox.ray import SandboxPool

HERE = os.path.dirname(os.path.abspath(__file__))
#: How often a sampled solution is of each kind.
KINDS = {"correct": 0.55, "wrong": 0.25, "crash": 0.14, "slow": 0.06}


def rollouts(problems, n, seed=0):
    """``n`` (problem, kind, program) drawn from the dataset."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        problem = problems[i % len(problems)]
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        code = rng.choice(problem["solutions"][kind])
        out.append((problem, kind, f"# rollout {i} for {problem['id']}\n{code}"))
    return out


def reward(judged):
    """The reward of one judged program: the fraction of its cases accepted (0 if it failed to
    be judged at all, which the pool reports as an exception)."""
    if isinstance(judged, Exception):
        return 0.0
    return judged.passed / judged.total if judged.total else 0.0


def main(n=1000):
    with open(os.path.join(HERE, "problems.json")) as f:
        problems = json.load(f)["problems"]
    batch = rollouts(problems, n)
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    # The judge's limits: a case gets a quarter of a second (the "slow" solutions get TLE on
    # their problem's large case); the standard library may be imported.
    config = SandboxConfig("stdin", preset="stdlib", timeout=0.25, cpu_time=0.25)
    start = time.perf_counter()
    with SandboxPool(config, num_cpus=0) as pool:
        ready = time.perf_counter() - start
        info = pool.actors_info()
        t0 = time.perf_counter()
        judged = pool.judge_many([code for _, _, code in batch], [p["cases"] for p, _, _ in batch])
        elapsed = time.perf_counter() - t0
    cases = sum(j.total for j in judged if not isinstance(j, Exception))
    errors = [j for j in judged if isinstance(j, Exception)]
    by_kind = collections.defaultdict(list)
    verdicts = collections.Counter()
    for (_, kind, _), j in zip(batch, judged):
        by_kind[kind].append(reward(j))
        if not isinstance(j, Exception):
            verdicts.update(c.verdict for c in j.cases)
    print(f"{n} solutions, {cases} test cases, {len(info)} actor(s) on {len({i['node_id'] for i in info})} "
          f"node(s), {sum(i['slots'] for i in info)} slots (pool ready in {ready:.1f} s)")  # fmt: skip
    print(f"judged in {elapsed:.2f} s: {n / elapsed:.0f} solutions/s, {cases / elapsed:.0f} cases/s")
    print("verdicts:", dict(verdicts.most_common()))
    for kind in KINDS:
        rs = by_kind.get(kind, [])
        if rs:
            print(f"  {kind:<8} {len(rs):4d} solutions, mean reward {sum(rs) / len(rs):.2f}")
    if errors:
        print(f"{len(errors)} solutions could not be judged: {errors[0]}")
    return judged


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)

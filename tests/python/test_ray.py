"""pysandbox.ray on a real two-node Ray cluster on this machine (ray.cluster_utils.Cluster: a head
and a second node, each its own raylet with its own `sandbox` resource), driving the real package:
actors on both nodes, results in order, judge_many, submit, sessions, an actor SIGKILLed in the
middle of a map of 2,000 requests, and nothing left running after shutdown."""

import os
import pickle
import signal
import time

import pytest

from conftest import skip_or_fail

from pysandbox import (
    CaseResult,
    JudgeResult,
    Result,
    SandboxConfig,
    SandboxCrashed,
    SandboxedException,
    SandboxError,
    Timeout,
)

try:
    import ray
    from ray.cluster_utils import Cluster

    from pysandbox.ray import SandboxActor, SandboxPool, kernel_features, kernel_problems
except ImportError as e:  # pragma: no cover - the extra is not installed
    ray = None
    _missing = str(e)

CONFIG = SandboxConfig("stdin")


def _result(stdout="x\n", **kw):
    base = dict(stdout=stdout, stderr="", stdout_truncated=False, stderr_truncated=False,
                cpu_time=0.01, wall_time=0.02, peak_memory=1 << 20, exit_code=0)  # fmt: skip
    base.update(kw)
    return Result(**base)


def test_results_and_errors_survive_pickle():
    # No cluster needed: what crosses between Ray processes is pickled.
    r = _result(value={"a": [1, 2]}, globals={"x": 1}, files={"o.txt": b"\x00"})
    assert pickle.loads(pickle.dumps(r)) == r
    j = JudgeResult([CaseResult("AC", "3\n", "", False, False, 0, None, None, 0.1, 0.1, 1)], 1, 1)
    assert pickle.loads(pickle.dumps(j)) == j
    for e in (SandboxedException("ZeroDivisionError", "division by zero", "Traceback ..."),
              Timeout("ran too long", "wall", r), SandboxCrashed("killed by SIGSYS", 31),
              SandboxError("plain")):  # fmt: skip
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e)
        assert vars(back) == vars(e)


@pytest.mark.skipif(ray is None, reason="ray is not installed")
def test_kernel_problems_name_each_missing_feature(tmp_path):
    def proc(userns, apparmor, actions):
        for rel, text in (("sys/user/max_user_namespaces", userns),
                          ("sys/kernel/apparmor_restrict_unprivileged_userns", apparmor),
                          ("sys/kernel/seccomp/actions_avail", actions)):  # fmt: skip
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
        return str(tmp_path)

    good = kernel_features(proc("15000", "0", "kill_process kill_thread user_notif allow"), landlock=4)
    assert kernel_problems(good) == []
    bad = kernel_features(proc("0", "1", "kill_process allow"), landlock=0)
    problems = " | ".join(kernel_problems(bad))
    for what in ("user namespaces are off", "AppArmor", "user_notif", "landlock"):
        assert what in problems
    # This machine's real kernel passes (the sandbox runs here).
    assert kernel_problems(kernel_features()) == []


@pytest.fixture(scope="module")
def cluster():
    if ray is None:
        skip_or_fail(f"ray is not installed ({_missing}): pip install 'ray[default]'")
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"sandbox": 4}, "include_dashboard": False})  # fmt: skip
    c.add_node(num_cpus=1, resources={"sandbox": 4})
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c
    if ray.is_initialized():
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def pool(cluster):
    p = SandboxPool(CONFIG, slots_per_actor=2, num_cpus=0, resources={"sandbox": 1})
    yield p
    p.shutdown()


def _node_ids():
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def test_map_runs_on_both_nodes_results_in_order(pool):
    assert len(_node_ids()) == 2
    before = {i["pid"]: i["served"] for i in pool.actors_info()}
    requests = [f"print({i} * {i})" for i in range(300)]
    requests += ["1 / 0", {"code": "print(input()[::-1])", "stdin": "olleh"},
                 {"code": "print(x + y)", "globals": {"x": 1}, "locals": {"y": 2}}]  # fmt: skip
    out = pool.map(requests, chunk=10)
    assert [r.stdout for r in out[:300]] == [f"{i * i}\n" for i in range(300)]
    assert all(isinstance(r, Result) for r in out[:300])
    assert isinstance(out[300], SandboxedException) and out[300].type_name == "ZeroDivisionError"
    assert out[301].stdout == "hello\n" and out[302].stdout == "3\n"
    info = pool.actors_info()
    # One actor per node, and each served a share of this map.
    assert {i["node_id"] for i in info} == _node_ids()
    assert all(i["served"] - before[i["pid"]] >= 20 for i in info), info
    # Back-pressure: never more calls at once on an actor than the pool allows.
    assert all(1 <= i["peak_calls"] <= pool.max_inflight for i in info), info
    with pytest.raises(ValueError, match=r"requests\[1\]: unknown key 'cod'"):
        pool.map(["print(1)", {"cod": "print(2)"}])


def test_judge_many_shared_and_per_program_cases(pool):
    add = "a, b = map(int, input().split())\nprint(a + b)"
    cases = [{"stdin": "1 2\n", "expected": "3\n"}, {"stdin": "2 2\n", "expected": "4\n"}]
    programs = [add, "print(3)", "raise SystemExit(1)", "print(("]
    out = pool.judge_many(programs, cases)
    assert [(j.passed, j.total) for j in out] == [(2, 2), (1, 2), (0, 2), (0, 2)]
    assert [c.verdict for c in out[1].cases] == ["AC", "WA"]
    assert out[3].compile_error["type"] == "SyntaxError"
    per = pool.judge_many([add, add], [cases, [{"stdin": "5 5\n", "expected": "11\n"}]])
    assert [(j.passed, j.total) for j in per] == [(2, 2), (0, 1)]
    with pytest.raises(ValueError, match="one list per program"):
        pool.judge_many([add], [cases, cases])


def test_submit_and_a_session_pinned_to_one_actor(pool):
    refs = [pool.submit({"code": f"print({i} + 1)"}) for i in range(20)]
    assert [r.stdout for r in ray.get(refs)] == [f"{i + 1}\n" for i in range(20)]
    with pytest.raises(SandboxedException, match="NameError"):
        ray.get(pool.submit("undefined_name"))
    with pool.session() as s:
        assert s.node_id in _node_ids()
        s.execute("total = 40")
        assert s.execute("total += 2; print(total)").stdout == "42\n"
        with pytest.raises(SandboxedException, match="KeyError"):
            s.execute("{}['k']")
        assert s.execute("print(total)").stdout == "42\n"  # the session lives on


def test_an_actor_refuses_to_become_ready_with_the_reason(cluster):
    bad = SandboxConfig(python="/nonexistent/python3")
    actor = SandboxActor.options(num_cpus=0).remote(bad, 1)
    with pytest.raises(ray.exceptions.RayActorError, match="cannot run on node .*/nonexistent/python3"):
        ray.get(actor.ready.remote(), timeout=60)
    with pytest.raises(SandboxError, match="no sandbox actor became ready: .*/nonexistent/python3"):
        SandboxPool(bad, num_cpus=0, resources={"sandbox": 1}, slots_per_actor=1)


def _check_every_answer(answers, n):
    assert sorted(answers) == list(range(n))
    errors = 0
    for i, a in answers.items():
        if isinstance(a, Result):
            assert a.stdout == f"{i * 3}\n", (i, a)
        else:
            assert isinstance(a, SandboxError), (i, a)
            assert "died" in str(a) or "no sandbox actor is alive" in str(a), (i, a)
            errors += 1
    return errors


def test_sigkill_an_actor_in_the_middle_of_a_map_of_2000(cluster):
    with SandboxPool(CONFIG, slots_per_actor=2, num_cpus=0, resources={"sandbox": 1}) as p:
        victim = next(i for i in p.actors_info() if i["node_id"] != cluster.head_node.node_id)
        answers = {}
        start = time.monotonic()
        for i, answer in p.map_unordered([f"print({i} * 3)" for i in range(2000)], chunk=20):
            answers[i] = answer
            if len(answers) == 300:
                os.kill(victim["pid"], signal.SIGKILL)
        # Every request answered; the killed actor's chunks were retried on the other one.
        assert _check_every_answer(answers, 2000) == 0
        assert time.monotonic() - start < 60
        assert any("died" in cause or "Died" in cause for _, cause in p.failures), p.failures
        # It was replaced (on its node, still alive): a new actor there serves requests.
        for _ in range(100):
            info = p.actors_info()
            if len(info) == 2:
                break
            time.sleep(0.2)
        assert victim["pid"] not in {i["pid"] for i in info}
        assert {i["node_id"] for i in info} == _node_ids()
        assert [r.stdout for r in p.map([f"print({i} * 3)" for i in range(40)], chunk=5)] == \
            [f"{i * 3}\n" for i in range(40)]  # fmt: skip
        # The killed actor's warm workers did not outlive it.
        time.sleep(1)
        assert not _alive(victim["worker_pids"]), victim
        # An actor killed behind the pool's back: a submitted run is retried on another one.
        os.kill(p.actors_info()[0]["pid"], signal.SIGKILL)
        refs = [p.submit(f"print({i} * 3)") for i in range(10)]
        assert [r.stdout for r in ray.get(refs, timeout=60)] == [f"{i * 3}\n" for i in range(10)]


def test_a_node_lost_in_the_middle_of_a_map(cluster):
    third = cluster.add_node(num_cpus=0, resources={"sandbox": 4})
    cluster.wait_for_nodes()
    nodes = _node_ids()
    assert len(nodes) == 3
    with SandboxPool(CONFIG, slots_per_actor=1, num_cpus=0, resources={"sandbox": 1}) as p:
        assert {i["node_id"] for i in p.actors_info()} == nodes
        answers = {}
        for i, answer in p.map_unordered([f"print({i} * 3)" for i in range(1500)], chunk=10):
            answers[i] = answer
            if len(answers) == 200:
                cluster.remove_node(third, allow_graceful=False)
        assert _check_every_answer(answers, 1500) == 0
        assert p.failures and all(node == third.node_id for node, _ in p.failures), p.failures
        # Its replacement went to a node that is still there.
        assert third.node_id not in {i["node_id"] for i in p.actors_info()}


def test_every_actor_killed_the_map_ends_with_named_errors(cluster):
    p = SandboxPool(CONFIG, slots_per_actor=1, num_cpus=0, resources={"sandbox": 1}, max_replacements=0)
    try:
        pids = [i["pid"] for i in p.actors_info()]
        answers = {}
        for i, answer in p.map_unordered([f"print({i} * 3)" for i in range(600)], chunk=10):
            answers[i] = answer
            if len(answers) == 50:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
        assert _check_every_answer(answers, 600) > 0
    finally:
        p.shutdown()


def _alive(pids):
    """The pids that are running (not gone, not zombies)."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def _cmdlines_with(needle):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmd and _alive([int(entry)]):
                out.append((int(entry), cmd[:200]))
    return out


def test_shutdown_leaves_no_ray_or_pysandbox_process(cluster, pool):
    info = pool.actors_info()
    pids = [i["pid"] for i in info] + [w for i in info for w in i["worker_pids"]]
    assert len(pids) >= 6 and not set(pids) - set(_alive(pids))
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    ray_pids = [p for n in cluster.list_all_nodes() for ps in n.all_processes.values() for p in ps]
    ray_pids = [p.process.pid for p in ray_pids]
    assert _cmdlines_with(session_dir) and _alive(ray_pids)
    pool.shutdown()
    ray.shutdown()
    cluster.shutdown()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (_alive(pids + ray_pids) or _cmdlines_with(session_dir)):
        time.sleep(0.2)
    assert not _alive(pids + ray_pids)
    assert not _cmdlines_with(session_dir)

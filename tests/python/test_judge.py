"""Sandbox.judge through the installed package and the real sandbox: a verdict per case, cases
spread over the warm workers with results in order, bad input refused before anything runs."""

import asyncio
import os
import shutil
import tempfile
import time

import pytest

from pysandbox import CaseResult, JudgeResult, Sandbox, SandboxConfig, SandboxError

#: A program whose input picks how it ends (shared with crates/cli/tests/judge.rs).
with open(os.path.join(os.path.dirname(__file__), "..", "fixtures", "judge_program.py")) as _f:
    PROGRAM = _f.read()

#: (case, the verdict it must get)
CASES = [
    ({"stdin": "1 2\n", "expected": "3\n"}, "AC"),
    ({"stdin": "2 2\n", "expected": "5\n"}, "WA"),
    ({"stdin": "tle\n", "expected": "3\n"}, "TLE"),
    ({"stdin": "mle\n"}, "MLE"),
    ({"stdin": "raise\n", "expected": ""}, "RE"),
    ({"stdin": "exit\n", "expected": None}, "RE"),
    ({"stdin": "ole\n"}, "OLE"),
    ({"stdin": "40 2"}, "AC"),
]


@pytest.fixture(scope="module")
def warm():
    config = SandboxConfig(preset="stdlib", timeout=1, max_memory=64, max_output=1024)
    with Sandbox(config, pool=True, workers=2) as s:
        yield s


def test_judge_gives_each_case_its_verdict(warm):
    r = warm.judge(PROGRAM, [c for c, _ in CASES])
    assert isinstance(r, JudgeResult) and all(isinstance(c, CaseResult) for c in r.cases)
    assert [c.verdict for c in r.cases] == [v for _, v in CASES]
    assert (r.passed, r.total, r.compile_error) == (2, 8, None)
    ac, wa, tle, mle, exc, exit3, ole, _ = r.cases
    assert ac.stdout == "3\n" and ac.exit_code == 0 and ac.limit is None
    assert ac.wall_time > 0 and ac.cpu_time > 0 and ac.peak_memory > 0
    assert wa.stdout == "4\n"
    assert tle.limit == "wall" and tle.wall_time >= 1.0
    assert mle.limit == "memory"
    assert exc.exit_code == 1 and "ZeroDivisionError: division by zero" in exc.stderr
    assert exit3.exit_code == 3
    assert ole.stdout_truncated and len(ole.stdout) == 1024


def test_judge_a_program_that_does_not_compile(warm):
    r = warm.judge("print('start')\nx = (\n", [{"stdin": "1"}, {"stdin": "2", "expected": "start\n"}])
    assert [c.verdict for c in r.cases] == ["RE", "RE"] and r.passed == 0
    assert r.compile_error["type"] == "SyntaxError"
    assert "line 2" in r.compile_error["traceback"]
    for c in r.cases:
        # Nothing of it ran, not even its first line.
        assert c.stdout == "" and c.exit_code == 1 and "SyntaxError" in c.stderr


def test_judge_compare_modes(warm):
    cases = [{"stdin": "", "expected": e} for e in ("1  2 \n\n", "1  2", "1 2")]
    program = "print('1  2 ')\nprint()"
    for mode, want in (("exact", ["AC", "WA", "WA"]), ("strip", ["AC", "AC", "WA"]),
                       ("tokens", ["AC", "AC", "AC"])):  # fmt: skip
        assert [c.verdict for c in warm.judge(program, cases, compare=mode).cases] == want, mode


def test_judge_gives_input_under_the_default_config():
    # The default configuration withholds input(): execute() is refused it, judge() is not.
    with Sandbox() as s:
        r = s.judge("a, b = map(int, input().split())\nprint(a + b)",
                    [{"stdin": "1 2\n", "expected": "3\n"}, {"stdin": "", "expected": None}])  # fmt: skip
        assert [c.verdict for c in r.cases] == ["AC", "RE"]
        assert "EOFError" in r.cases[1].stderr


def test_judge_spreads_cases_over_the_workers_in_order():
    # The hash seed is a worker's: it tells which worker ran a case.
    program = "import time\nn = input()\ntime.sleep(0.3)\nprint(n, hash('judge'))"
    config = SandboxConfig("stdin", preset="stdlib", timeout=5)
    with Sandbox(config, pool=True, workers=2) as s:
        start = time.monotonic()
        r = s.judge(program, [{"stdin": str(i)} for i in range(8)])
        took = time.monotonic() - start
        # A configuration with the stdin feature judges on its own pool, no second one.
        assert s._judge is None
    numbers = [c.stdout.split()[0] for c in r.cases]
    assert numbers == [str(i) for i in range(8)]
    assert len({c.stdout.split()[1] for c in r.cases}) == 2
    # Two at a time: less than the cases one after the other (8 x 0.3 s).
    assert took < sum(c.wall_time for c in r.cases) * 0.75, took


def test_judge_concurrent_calls_and_asyncio(warm):
    async def main():
        calls = (warm.ajudge("print(int(input()) * 2)", [{"stdin": str(i), "expected": f"{2 * i}\n"}])
                 for i in range(6))  # fmt: skip
        return await asyncio.gather(*calls)

    assert [r.passed for r in asyncio.run(main())] == [1] * 6


@pytest.mark.parametrize("cases, compare, error, match", [
    ([{"stdin": "a"}, {"expected": "3\n"}], "exact", ValueError, r'cases\[1\]: "stdin" is missing'),
    ([{"stdin": "a"}, "1 2"], "exact", ValueError, r"cases\[1\]: expected a case object"),
    ([{"stdin": 5}], "exact", ValueError, r'cases\[0\]: "stdin" must be a string'),
    ([{"stdin": "a", "expect": "3"}], "exact", ValueError, 'unknown field "expect"'),
    ([{"stdin": "a", "expected": 3}], "exact", ValueError, '"expected" must be a string'),
    ([{"stdin": b"a"}], "exact", TypeError, r"cases\[0\]\['stdin'\]: a bytes"),
    ([], "exact", ValueError, "no cases"),
    ("1 2", "exact", TypeError, "cases must be a list"),
    ([{"stdin": "a"}], "loose", ValueError, "unknown compare mode 'loose'"),
])  # fmt: skip
def test_judge_refuses_bad_input_before_running_anything(cases, compare, error, match):
    # The program leaves a file behind for each case it runs (not under /tmp: warm mode refuses
    # paths there).
    out = tempfile.mkdtemp(dir="/var/tmp", prefix="pysandbox-judge-")
    os.chmod(out, 0o777)
    try:
        program = f"open({out!r} + '/ran-' + input(), 'w').write('x')"
        config = SandboxConfig(allow_write=[out])
        with Sandbox(config) as s:
            with pytest.raises(error, match=match):
                s.judge(program, cases, compare=compare)
            assert os.listdir(out) == []
            # The control: good cases do run, so the check above can fail.
            assert s.judge(program, [{"stdin": "a"}, {"stdin": "b"}]).passed == 2
            assert sorted(os.listdir(out)) == ["ran-a", "ran-b"]
    finally:
        shutil.rmtree(out)


def test_judge_on_a_closed_sandbox_raises():
    s = Sandbox()
    s.close()
    with pytest.raises(SandboxError, match="closed"):
        s.judge("print(1)", [{"stdin": ""}])

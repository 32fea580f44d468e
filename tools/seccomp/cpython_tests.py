"""Run modules of CPython's own regression tests (the `test` package) and print one JSON object:
{module: {test_id: "pass" | "fail" | "error" | "skip" | "xfail" | "xpass"}}.

The same file runs outside (the plain interpreter) and inside the jail (`pysandbox run ... FILE
MODULE...`), so that tools/compare_cpython_tests.py can put the two side by side. Resources that
reach outside the machine (network, GUI, huge memory, long CPU) are off in both places, as
regrtest's default (`-u` not given) has them.

    python3.11 tools/cpython_tests.py test_json test_re > outside.json
"""

import json
import os
import sys
import time
import unittest

import test.support

# regrtest without `-u`: no optional resource. (Outside regrtest, test.support otherwise treats
# every resource as enabled.)
test.support.use_resources = []
test.support.verbose = 0
test.support.failfast = False


# Tests that make a call on the filter's kill list (seccomp.rs KILL): the jail kills the whole
# interpreter by design, so they are left out in both places (and listed in the output).
KILLED = {
    "test.test_os.OSErrorTests.test_oserror_filename": "os.chroot",
    "test.test_time.TimeTestCase.test_clock_settime": "time.clock_settime",
    "test.test_time.TimeTestCase.test_monotonic_settime": "time.clock_settime",
}


def without_killed(suite):
    kept = unittest.TestSuite()
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            kept.addTest(without_killed(t))
        elif t.id() not in KILLED:
            kept.addTest(t)
    return kept


class Recorder(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.outcomes = {}

    def _set(self, test, what):
        self.outcomes[test.id()] = what

    def addSuccess(self, test):
        self._set(test, "pass")

    def addFailure(self, test, err):
        self._set(test, "fail")

    def addError(self, test, err):
        # setUpClass / module fixtures fail as a _ErrorHolder whose id names the fixture.
        self._set(test, "error")

    def addSkip(self, test, reason):
        self._set(test, "skip")

    def addExpectedFailure(self, test, err):
        self._set(test, "xfail")

    def addUnexpectedSuccess(self, test):
        self._set(test, "xpass")

    def addSubTest(self, test, subtest, err):
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._set(test, "fail" if failed else "error")


def run_module(name):
    try:
        suite = unittest.defaultTestLoader.loadTestsFromName("test." + name)
    except Exception as e:  # noqa: BLE001 - an import failure is a result
        return {name + ".<import>": "error:" + type(e).__name__}
    suite = without_killed(suite)
    result = Recorder()
    # Subtest failures set the outcome before addSuccess would; keep the worst.
    plain_set = result._set

    def worst(test, what, _set=plain_set):
        if result.outcomes.get(test.id()) in ("fail", "error") and what == "pass":
            return
        _set(test, what)

    result._set = worst
    cwd = os.getcwd()
    try:
        with test.support.os_helper.temp_cwd():
            suite.run(result)
    finally:
        os.chdir(cwd)
    return result.outcomes


def main():
    out = {"<left out: kill-listed calls>": {k: "skip:" + v for k, v in KILLED.items()}}
    for name in sys.argv[1:]:
        start = time.monotonic()
        out[name] = run_module(name)
        print(f"{name}: {len(out[name])} tests, {time.monotonic() - start:.1f}s", file=sys.stderr)
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

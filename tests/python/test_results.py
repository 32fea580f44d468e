"""Results coming out of the sandbox are untrusted: decoded in linear time, checked for shape.

The sandboxed code can write a result of its own in place of the real one (conftest's
`forged_result_code`); whatever it writes must end as a SandboxError subclass, quickly, without
stalling the caller's other threads.
"""

import re
import threading
import time

import pytest

from pysandbox import MalformedResult, Sandbox, SandboxConfig, SandboxError, _native

from conftest import forged_result_code

#: The modulus of CPython's numeric hash: every multiple of it hashes to 0.
P = 2**61 - 1
TIMEOUT = 5.0


def ints(values):
    return ",".join('{"i":"%x"}' % v for v in values)


def colliding_set(n, tag="s"):
    """Tagged JSON of a set of `n` distinct ints that all hash to 0."""
    return '{"%s":[%s]}' % (tag, ints(P * k for k in range(1, n + 1)))


def result(value_json):
    """A result whose value is `value_json` (tagged JSON)."""
    return '{"d":[["value",%s]]}' % value_json


# _native.decode ------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["s", "fs"])
def test_decode_refuses_a_set_whose_members_all_hash_alike(tag):
    text = colliding_set(100_000, tag)
    start = time.monotonic()
    with pytest.raises(ValueError, match="too many set members or dict keys with the same hash"):
        _native.decode(text)
    # Without the bound: over a minute here (quadratic), holding the GIL.
    assert time.monotonic() - start < 1.0


def test_decode_refuses_a_dict_whose_keys_all_hash_alike():
    # Tuples of colliding ints collide too: a tuple's hash is a function of its items' hashes.
    pairs = ",".join('[{"t":[{"i":"%x"}]},null]' % (P * k) for k in range(1, 100_001))
    start = time.monotonic()
    with pytest.raises(ValueError, match="same hash"):
        _native.decode('{"d":[%s]}' % pairs)
    assert time.monotonic() - start < 1.0


def test_decode_accepts_a_few_members_with_the_same_hash():
    # -1 and -2 both hash to -2 in CPython; 32 multiples of P are the most that may collide.
    assert _native.decode('{"s":[%s]}' % ints([-1, -2])) == {-1, -2}
    assert _native.decode(colliding_set(32)) == {P * k for k in range(1, 33)}
    with pytest.raises(ValueError, match="same hash"):
        _native.decode(colliding_set(33))


def test_decode_keeps_big_sets_and_dicts_of_distinct_keys():
    n = 100_000
    start = time.monotonic()
    assert _native.decode('{"s":[%s]}' % ints(range(n))) == set(range(n))
    assert _native.decode('{"fs":[%s]}' % ints(range(-n, 0))) == frozenset(range(-n, 0))
    pairs = ",".join('[{"i":"%x"},"%d"]' % (k, k) for k in range(n))
    assert _native.decode('{"d":[%s]}' % pairs) == {k: str(k) for k in range(n)}
    big = [2**200 + k for k in range(1000)]
    assert _native.decode('{"s":[%s]}' % ints(big)) == set(big)
    assert time.monotonic() - start < 5.0


def test_decode_refuses_unhashable_members_and_keys():
    with pytest.raises(ValueError, match="unhashable set member"):
        _native.decode('{"s":[[{"i":"1"}]]}')
    with pytest.raises(ValueError, match="unhashable dict key"):
        _native.decode('{"d":[[[], null]]}')
    with pytest.raises(ValueError, match="not JSON"):
        _native.decode("{")


class Ticker:
    """A thread counting as fast as it can, noting the longest it went without the GIL."""

    def __init__(self):
        self.count = 0
        self.longest_pause = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        last = time.monotonic()
        while not self._stop.is_set():
            self.count += 1
            now = time.monotonic()
            self.longest_pause = max(self.longest_pause, now - last)
            last = now

    def __enter__(self):
        self._thread.start()
        time.sleep(0.05)
        self.count, self.longest_pause = 0, 0.0
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_a_long_decode_lets_other_threads_run():
    # About 14 MB (the default max_result is 16 MB): half a second or so to parse and build.
    text = "[%s]" % ",".join(['{"i":"%x"}' % k for k in range(1_000_000)] + ['"x" '] * 300_000)
    with Ticker() as t:
        start = time.monotonic()
        value = _native.decode(text)
        took = time.monotonic() - start
    assert len(value) == 1_300_000
    # Most of the time goes to parsing the JSON, with the GIL released; were it held, the ticker
    # would wait for the whole decode.
    assert t.longest_pause < took / 2, (t.longest_pause, took)


# The package, against the real sandbox ---------------------------------------------------------


@pytest.fixture(params=["cold", "warm", "session"])
def run(request):
    """Runs code (exec) the given way; a fresh session for each call."""
    config = SandboxConfig(preset="stdlib", timeout=TIMEOUT)
    if request.param == "session":
        sandbox = Sandbox(config)

        def in_session(code):
            with sandbox.session() as s:
                return s.execute(code)

        yield in_session
        sandbox.close()
        return
    with Sandbox(config, pool=request.param == "warm", workers=1) as sandbox:
        assert sandbox.execute("x = 1").globals == {"x": 1}
        yield sandbox.execute


def test_hostile_result_fails_fast_without_stalling_other_threads(run):
    # 100 000 ints that all hash to 0: quadratic to put in a set (18 s for 1.7 MB before).
    code = forged_result_code(result(colliding_set(100_000)))
    assert len(code) > 1_500_000
    with Ticker() as t:
        start = time.monotonic()
        with pytest.raises(MalformedResult, match="same hash"):
            run(code)
        elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT
    assert t.longest_pause < 1.0, t.longest_pause
    assert t.count > 10_000, t.count


@pytest.mark.parametrize(
    "payload, message",
    [
        ('{"i":"5"}', "it is of type int, not dict"),
        ("null", "it is of type NoneType, not dict"),
        ('{"d":[["error",{"i":"5"}]]}', "error is of type int, not dict"),
        ('{"d":[["error",{"d":[["type","E"],["message","m"]]}]]}', "error has no traceback"),
        ('{"d":[["error",{"d":[["type",{"i":"1"}],["message","m"],["traceback",""]]}]]}',
         "error's type is of type int, not str"),
        ('{"d":[["error",{"d":[["type","E"],["message","m"],["traceback",""],["x",null]]}]]}',
         "unknown key 'x' in error"),
        ('{"d":[["globals",[{"i":"1"}]]]}', "globals is of type list, not dict"),
        ('{"d":[["globals",{"d":[[{"i":"1"},null]]}]]}', "globals has a key of type int"),
        ('{"d":[["locals","x"]]}', "locals is of type str, not dict"),
        ('{"d":[["exit","x"]]}', "exit is of type str, not int"),
        ('{"d":[["bogus",null]]}', "unknown key 'bogus'"),
        ('{"d":[[{"i":"1"},null]]}', "the result has a key of type int"),
        ("{", "not JSON"),
        ('{"x": 1}', "malformed data: not pysandbox data: unknown tag 'x'"),
    ],
)  # fmt: skip
def test_a_result_of_the_wrong_shape_is_a_malformed_result(run, payload, message):
    with pytest.raises(MalformedResult, match=re.escape(message)) as e:
        run(forged_result_code(payload))
    assert isinstance(e.value, SandboxError)


def test_forged_results_of_the_right_shape_still_work(run):
    # The check refuses shapes, not data: a well-formed forgery is the code's own business.
    r = run(forged_result_code('{"d":[["globals",{"d":[["a",{"i":"2a"}]]}],["exit",{"i":"3"}]]}'))
    assert r.globals == {"a": 42} and r.exit_code == 3

"""Summarise an `strace -f` log of pysandbox: the system calls made under the jail's seccomp filter.

A process is "filtered" from the line where it installs a seccomp filter (`seccomp(...)` or
`prctl(PR_SET_SECCOMP, ...)` returning success) on, and so is every process it forks after that
line (clone, clone3, fork, vfork). Calls of the supervisor, and of a jail before its filter is in
place (its namespace and mount setup), are not counted: only what the filter has to decide.

Prints JSON: {"calls": {name: count}, "errors": {name: {errno: count}}, "args": {name: {value:
count}}} where "args" holds the argument the filter could inspect for a few calls (madvise's
advice, mremap's flags, prctl's option, fcntl's command, ioctl's request, personality's persona,
socket's family, clone's flags). Several logs merge: pass them all.

    python3.11 tools/syscall_summary.py trace1.log trace2.log > summary.json
"""

import collections
import json
import re
import sys

LINE = re.compile(r"^(\d+)\s+(.*)$")
CALL = re.compile(r"^([a-z0-9_]+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?|0x[0-9a-f]+)(?:\s+([A-Z0-9_]+))?")
# With --decode-pids=pidns a pid of another namespace is followed by the host's.
NS_PID = re.compile(r"= -?\d+ /\* (\d+) in strace's PID NS \*/")
FORKS = {"clone", "clone3", "fork", "vfork"}
# Which argument (0-based) the summary keeps, per call.
ARG_OF = {
    "madvise": 2,
    "mremap": 3,
    "prctl": 0,
    "fcntl": 1,
    "ioctl": 1,
    "personality": 0,
    "socket": 0,
    "clone": 0,
    "mmap": 3,
    "setsockopt": 2,
    "getsockopt": 2,
    "arch_prctl": 0,
    "futex": 1,
    "rt_sigprocmask": 0,
    "flock": 1,
}


def split_args(s):
    """Top-level comma split of strace's argument text (quotes, brackets and braces nest)."""
    out, depth, cur, quoted, esc = [], 0, [], False, False
    for ch in s:
        if quoted:
            cur.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse(paths):
    """Yield (index, pid, name, args text or None, result text or None, errno or None)."""
    pending = {}
    i = 0
    for path in paths:
        with open(path, errors="replace") as f:
            for raw in f:
                m = LINE.match(raw.rstrip("\n"))
                if not m:
                    continue
                pid, rest = int(m.group(1)), m.group(2)
                i += 1
                r = RESUMED.match(rest)
                if r:
                    name = r.group(1)
                    start, args = pending.pop((path, pid), (i, ""))
                    args = args[: -len("<unfinished ...>")].rstrip() + r.group(2)
                    res = RESULT.search(r.group(2))
                    yield start, pid, name, args, res and res.group(1), res and res.group(2)
                    continue
                c = CALL.match(rest)
                if not c:
                    continue
                name, tail = c.group(1), c.group(2)
                if tail.endswith("<unfinished ...>"):
                    pending[(path, pid)] = (i, tail)
                    continue
                res = RESULT.search(tail)
                yield i, pid, name, tail, res and res.group(1), res and res.group(2)


def summarise(paths):
    events = sorted(parse(paths), key=lambda e: e[0])
    installed = {}  # pid -> index from which it is filtered
    for idx, pid, name, args, res, _ in events:
        ok = res not in (None, "?") and not res.startswith("-")
        if name == "seccomp" and ok and "SECCOMP_SET_MODE_FILTER" in args:
            installed.setdefault(pid, idx)
        if name == "prctl" and ok and args.startswith("PR_SET_SECCOMP"):
            installed.setdefault(pid, idx)
        if name in FORKS and ok and pid in installed and installed[pid] < idx:
            ns = NS_PID.search(args or "")
            child = int(ns.group(1)) if ns else int(res, 0)
            installed.setdefault(child, idx)
    calls = collections.Counter()
    errors = collections.defaultdict(collections.Counter)
    argv = collections.defaultdict(collections.Counter)
    for idx, pid, name, args, res, err in events:
        start = installed.get(pid)
        if start is None or idx <= start:
            continue
        calls[name] += 1
        if err:
            errors[name][err] += 1
        if name in ARG_OF and args is not None:
            parts = split_args(args)
            k = ARG_OF[name]
            if k < len(parts):
                argv[name][parts[k]] += 1
    return {
        "calls": dict(calls.most_common()),
        "errors": {k: dict(v) for k, v in sorted(errors.items())},
        "args": {k: dict(v.most_common()) for k, v in sorted(argv.items())},
        "processes": len(installed),
    }


if __name__ == "__main__":
    json.dump(summarise(sys.argv[1:]), sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")

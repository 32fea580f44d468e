"""Compare two runs of tools/seccomp/cpython_tests.py (for example outside the jail and inside it,
or inside with the old and with the new seccomp filter): per module the pass/fail/error/skip
counts of each, then every test whose outcome differs. Exit status 1 if any test differs.

    python3.11 tools/seccomp/compare_cpython_tests.py outside.json inside.json
"""

import collections
import json
import sys


def counts(results):
    c = collections.Counter(v.split(":")[0] for v in results.values())
    return " ".join(f"{k}={c[k]}" for k in ("pass", "fail", "error", "skip", "xfail", "xpass") if c[k])


def main(a_path, b_path):
    a, b = json.load(open(a_path)), json.load(open(b_path))
    differ = 0
    for module in sorted(set(a) | set(b)):
        ra, rb = a.get(module, {}), b.get(module, {})
        diffs = sorted(t for t in set(ra) | set(rb) if ra.get(t) != rb.get(t))
        mark = "same" if not diffs else f"{len(diffs)} differ"
        print(f"{module:28} {mark:10} | {counts(ra):40} | {counts(rb)}")
        for t in diffs:
            print(f"    {t}: {ra.get(t, '-')} -> {rb.get(t, '-')}")
        differ += len(diffs)
    print(f"{differ} tests differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

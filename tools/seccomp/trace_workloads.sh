#!/bin/sh
# Trace every workload the seccomp allowlist is measured against (SECURITY.md, "A smaller kernel
# surface") and print the merged summary: CPython's own regression tests (the modules of
# cpython_test_modules.txt; test_socket with the network feature), numpy/pandas/matplotlib/
# pillow work cold, the features (threads, fork, a process pool, subprocess, sockets, asyncio,
# signals, mmap, sqlite3), and the warm pool: batch lines, cell mode, sessions.
#
#   tools/seccomp/trace_workloads.sh PYSANDBOX_BIN OUTDIR     (takes ~10 minutes under strace)
set -eu
bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
export PYTHON="${PYTHON:-python3.11}"
mkdir -p "$out"
cd "$out"
trace() { name=$1; shift; "$here/trace_syscalls.sh" "$out/$name.log" "$@" > "$out/$name.out" || true; }
big="--timeout 1200s --memory 1G --processes 64 --open-files 1024 --tmp-size 256M --file-size 256M --max-output 32M"
mods=$(grep -v '^#' "$here/cpython_test_modules.txt")
trace cpython "$bin" run --preset full $big --allow-subprocess "$here/cpython_tests.py" $mods
trace cpython_net "$bin" run --preset full $big --feature network "$here/cpython_tests.py" test_socket
trace packages "$bin" run --preset full $big "$here/workload_packages.py"
trace features "$bin" run --preset full $big --allow-subprocess --feature network \
    --env TRACE_SUBPROCESS=1 --env TRACE_NETWORK=1 "$here/workload_features.py"
trace features_plain "$bin" run --preset full $big "$here/workload_features.py"
feat=$("$PYTHON" -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$here/workload_features.py")
pkgs=$("$PYTHON" -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$here/workload_packages.py")
cat > "$out/batch.jsonl" <<JSONL
{"id": 1, "code": "print(sum(range(10)))"}
{"id": 2, "code": "import numpy as np, pandas as pd\nprint(pd.DataFrame({'x': np.arange(5)}).describe().shape)"}
{"id": 3, "code": "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\nfig", "mode": "cell"}
{"id": 4, "code": "import pandas as pd\npd.DataFrame({'a': [1, 2]})", "mode": "cell"}
{"id": 5, "code": "x = 41", "session": "s"}
{"id": 6, "code": "x += 1\nprint(x)", "session": "s"}
{"id": 7, "code": "import matplotlib.pyplot as plt\nplt.plot([x, 1])\nplt.gcf()", "session": "s", "mode": "cell"}
{"id": 8, "code": $feat}
{"id": 9, "code": $feat, "session": "t"}
{"id": 10, "code": $pkgs}
{"id": 11, "code": "raise SystemExit(3)"}
{"id": 12, "code": "while True: pass"}
JSONL
trace batch "$bin" batch --preset full --timeout 30s --memory 1G --processes 64 --tmp-size 128M \
    --file-size 64M --allow-subprocess --env TRACE_SUBPROCESS=1 --workers 2 \
    --preload numpy,pandas,matplotlib.pyplot < "$out/batch.jsonl"
trace batch_net "$bin" batch --preset full --timeout 30s --processes 64 --feature network \
    --env TRACE_NETWORK=1 --workers 1 < "$out/batch.jsonl"
"$PYTHON" "$here/syscall_summary.py" "$out"/*.log > "$out/summary.json"
"$PYTHON" -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(len(s["calls"]), "distinct calls under the filter")
for k, v in s["calls"].items():
    print(f"{k:24} {v:10}", s["errors"].get(k, ""))
' "$out/summary.json"

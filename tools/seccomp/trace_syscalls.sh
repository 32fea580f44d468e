#!/bin/sh
# Trace the system calls a pysandbox command's jails make under their seccomp filter.
#
#   tools/trace_syscalls.sh OUT.log pysandbox run --preset full -c 'import numpy'
#
# strace follows every process pysandbox starts (jail inits, interpreters, warm zygotes and
# their request children) from the host; tools/syscall_summary.py then keeps only the calls
# made after a process installed its filter (or was forked by one that had). Calls served by
# the vDSO (clock_gettime, gettimeofday, time, getcpu) never reach the kernel and do not show.
# Needs strace and the rights to trace the command (root, or the command's own user with
# ptrace_scope 0). Prints the log's summary on stderr.
set -eu
out=$1
shift
rc=0
strace -f -qq -s 64 --decode-pids=pidns -o "$out" -- "$@" || rc=$?
"${PYTHON:-python3.11}" "$(dirname "$0")/syscall_summary.py" "$out" | "${PYTHON:-python3.11}" -c '
import json, sys
s = json.load(sys.stdin)
print(len(s["calls"]), "distinct calls under the filter:", " ".join(s["calls"]), file=sys.stderr)
'
exit $rc

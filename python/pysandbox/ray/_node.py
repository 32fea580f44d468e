"""What a node's kernel offers the sandbox: the checks a :class:`SandboxActor` makes before it
becomes ready (the same criteria as ``pysandbox doctor``: crates/cli/src/doctor.rs)."""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Dict, List, Optional

#: landlock_create_ruleset(2): 444 on every architecture (the syscall numbers unified since 5.1).
_SYS_LANDLOCK_CREATE_RULESET = 444
_LANDLOCK_CREATE_RULESET_VERSION = 1


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 without Landlock (landlock_create_ruleset(2) with
    LANDLOCK_CREATE_RULESET_VERSION, as the Rust side asks)."""
    if platform.system() != "Linux":
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        abi = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))  # fmt: skip
    except (OSError, AttributeError):
        return 0
    return max(int(abi), 0)


def kernel_features(proc: str = "/proc", landlock: Optional[int] = None) -> Dict[str, object]:
    """The node's kernel features pysandbox needs, as data (``proc``: where procfs is, for tests;
    ``landlock``: the Landlock ABI, asked of the kernel when None)."""
    userns = _read(os.path.join(proc, "sys/user/max_user_namespaces"))
    return {
        "kernel": _read(os.path.join(proc, "sys/kernel/osrelease")) or platform.release(),
        "max_user_namespaces": int(userns) if userns and userns.isdigit() else 0,
        "apparmor_restrict_unprivileged_userns": _read(
            os.path.join(proc, "sys/kernel/apparmor_restrict_unprivileged_userns")),
        "seccomp_actions": (_read(os.path.join(proc, "sys/kernel/seccomp/actions_avail")) or "").split(),
        "landlock_abi": landlock_abi() if landlock is None else landlock,
    }  # fmt: skip


def kernel_problems(features: Dict[str, object]) -> List[str]:
    """Why the sandbox cannot run on a node with these ``features`` (empty: it can), each
    reason saying how to fix it."""
    problems = []
    if not features["max_user_namespaces"]:
        problems.append("user namespaces are off (user.max_user_namespaces = 0): "
                        "set `sysctl user.max_user_namespaces=10000`")  # fmt: skip
    if features["apparmor_restrict_unprivileged_userns"] == "1":
        problems.append("AppArmor blocks unprivileged user namespaces "
                        "(kernel.apparmor_restrict_unprivileged_userns = 1): set it to 0")  # fmt: skip
    actions = features["seccomp_actions"]
    assert isinstance(actions, list)
    if "user_notif" not in actions or "kill_process" not in actions:
        problems.append("seccomp lacks the user_notif and kill_process actions "
                        f"(kernel actions: {' '.join(actions) or 'none'}): need Linux >= 5.0 "
                        "with CONFIG_SECCOMP_FILTER")  # fmt: skip
    if not features["landlock_abi"]:
        problems.append("landlock not supported by this kernel (need Linux >= 5.13 with "
                        "landlock in the lsm= list); run `pysandbox doctor`")  # fmt: skip
    return problems



# ---- warm mode (appended to support.py for `pysandbox worker`) ------------------------------
# The zygote: runs as uid 0 of the jail's user namespace with its capabilities, only ever runs
# this trusted code, and keeps one request child forked and isolated ahead of time:
#
#   zygote ── C: PID 1 of a new PID namespace, a fresh /tmp (sessions: their own mount
#                namespace); drops capabilities, sets rlimits, Landlock, the strict seccomp
#                filter, reseeds; then waits for its request
#
# Requests and responses are JSON lines on the zygote's stdin and stdout (see crate::warm).
# Descriptor 6 holds the worker's configuration (JSON): guard, landlock rules, seccomp program,
# limits, modules to preload.

_W = {}


def _pysandbox_warm(ns, boot):
    import ctypes
    import json
    import os
    import select
    import signal
    import sys
    import time

    with open(6, "rb") as f:
        cfg = json.loads(f.read())
    _W["cfg"] = cfg
    _W["boot"] = boot
    _W["libc"] = libc = ctypes.CDLL(None, use_errno=True)
    for name in cfg.get("preload", []):
        try:
            __import__(name)
        except Exception:
            pass
    # Objects made so far live in every child: keep the collector away from them, so that the
    # children's collections do not copy their pages (copy-on-write).
    import gc

    gc.collect()
    gc.freeze()
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the request's PID 1 comes back to us
    # The Landlock rules' paths, opened once: every request child adds its rules from these.
    import fcntl

    rule_fds = []
    for path, allowed in cfg["landlock"]["rules"]:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)  # clear of the children's 0-4
        os.close(fd)
        rule_fds.append((high, allowed))
    _W["rule_fds"] = rule_fds
    _warm_prepare_isolation(cfg)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    out = 1
    pending = b""
    sessions = {}
    _W["sessions"] = sessions
    ready = _warm_prefork()
    _warm_send(out, {"ready": True})
    while True:
        # Idle sessions expire.
        now = time.monotonic()
        for sid, s in list(sessions.items()):
            if now - s["used"] > s["idle"]:
                _warm_kill(s["child"])
                del sessions[sid]
        timeout = 1.0 if sessions else None
        r, _, _ = select.select([0], [], [], timeout)
        if not r:
            continue
        chunk = os.read(0, 1 << 20)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except ValueError as exc:
                _warm_send(out, {"id": None, "error": "bad request: %s" % exc})
                continue
            op = req.get("op", "run")
            if op == "run":
                child, ready = ready, None
                resp = _warm_serve(child, req)
                _warm_send(out, resp)
                _warm_fresh_tmp()
                ready = _warm_prefork()
            elif op == "open":
                sid = str(req.get("session"))
                child = _warm_prefork(own_ns=True)
                _warm_dispatch(child, {"session": True})
                sessions[sid] = {"child": child, "used": time.monotonic(),
                                 "idle": float(req.get("idle", 300))}  # fmt: skip
                _warm_send(out, {"id": req.get("id"), "session": sid, "opened": True})
            elif op == "exec":
                s = sessions.get(str(req.get("session")))
                if s is None:
                    _warm_send(out, {"id": req.get("id"), "error": "no such session"})
                    continue
                s["used"] = time.monotonic()
                resp = _warm_serve(s["child"], req, session=True)
                if resp.get("ended"):
                    del sessions[str(req.get("session"))]
                _warm_send(out, resp)
            elif op == "close":
                s = sessions.pop(str(req.get("session")), None)
                if s is not None:
                    _warm_kill(s["child"])
                _warm_send(out, {"id": req.get("id"), "closed": s is not None})
            else:
                _warm_send(out, {"id": req.get("id"), "error": "unknown op %r" % (op,)})
    for s in sessions.values():
        _warm_kill(s["child"])
    if ready:
        _warm_kill(ready)


def _warm_send(fd, obj):
    import json
    import os

    data = (json.dumps(obj, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _warm_kill(child):
    import os
    import signal

    try:
        os.kill(child["pid"], signal.SIGKILL)
    except OSError:
        pass
    _warm_release(child)


def _warm_release(child):
    # Close the zygote's ends of a child's pipes and reap what has ended.
    import os

    for fd in child["fds"]:
        try:
            os.close(fd)
        except OSError:
            pass
    _warm_reap()


def _warm_reap():
    import os

    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _warm_fresh_tmp():
    # A new, empty /tmp for the next request (the last one's is detached; what still used it
    # dies with its PID namespace). Sessions get a mount namespace and /tmp of their own.
    import ctypes

    libc = _W["libc"]
    if libc.umount2(b"/tmp", 2) != 0:  # MNT_DETACH
        raise OSError(ctypes.get_errno(), "umount /tmp")
    _warm_mount_tmp()


def _warm_mount_tmp():
    import ctypes

    libc = _W["libc"]
    size = int(_W["cfg"]["limits"]["tmp_size"])
    opts = ("mode=1777,size=%d,nr_inodes=%d" % (size, max(1024, size // 1024))).encode()
    if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0x2 | 0x4, opts) != 0:  # nosuid, nodev
        raise OSError(ctypes.get_errno(), "mount /tmp")


def _warm_prefork(own_ns=False):
    # Fork C, PID 1 of a new PID namespace, and return the zygote's ends of its pipes. A request
    # child shares the zygote's mount namespace, with a fresh /tmp (requests of one worker run
    # one at a time); a session's has a mount namespace and /tmp of its own.
    import ctypes
    import os

    cfg = _W["cfg"]
    libc = _W["libc"]
    if "self_pidfd" not in _W:
        _W["self_pidfd"] = os.pidfd_open(os.getpid())
    req_r, req_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    ours = (req_w, out_r, err_r, res_r)
    # Processes of this user in the jail once C runs: init, the zygote, C and one per open
    # session; C's process limit counts on top of them.
    _W["live"] = 3 + len(_W.get("sessions", {}))
    CLONE_NEWPID = 0x20000000
    # The next child is PID 1 of a new namespace; then the zygote's own namespace again.
    if libc.unshare(CLONE_NEWPID) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWPID)")
    try:
        pid = os.fork()
        if pid == 0:
            try:
                for fd in ours:
                    os.close(fd)
                if own_ns:
                    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
                        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
                    if libc.mount(None, b"/", None, 0x4000 | 0x40000, None) != 0:
                        raise OSError(ctypes.get_errno(), "mount private")
                    _warm_mount_tmp()
                os.chdir("/tmp")
            except BaseException:
                os._exit(70)
            _warm_c(cfg, req_r, out_w, err_w, res_w)
    finally:
        if os.getpid() != 1 and libc.setns(_W["self_pidfd"], CLONE_NEWPID) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the zygote's PID namespace")
    for fd in (req_r, out_w, err_w, res_w):
        os.close(fd)
    return {"pid": pid, "req": req_w, "out": out_r, "err": err_r, "res": res_r,
            "fds": [req_w, out_r, err_r, res_r]}  # fmt: skip


def _warm_c(cfg, req_r, out_w, err_w, res_w):
    # C: PID 1 of its namespace (everything it leaves behind dies with it); isolate, then wait
    # for the request.
    import os

    code = 71
    try:
        os.setsid()
        # Descriptors: 0 stdin (set per request), 1 and 2 output, 3 the request, 4 the report.
        keep = {fd for fd, _ in _W["rule_fds"]}
        moved = []
        for target, fd in ((3, req_r), (4, res_w), (1, out_w), (2, err_w)):
            if target in keep:
                raise OSError("descriptor %d is taken" % target)
            if fd != target:
                os.dup2(fd, target)
            moved.append(fd)
        for fd in moved:
            if fd > 4 and fd not in keep:
                os.close(fd)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        _warm_isolate(cfg)
        os.closerange(5, 1 << 16)
        code = 72
        _warm_warmup()
        _warm_run(cfg)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    try:
        sys_flush()
    except BaseException:
        pass
    os._exit(code)


def sys_flush():
    import sys

    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass


def _warm_prepare_isolation(cfg):
    # Zygote start: everything the children's isolation needs that can be done once. The
    # capability bounding set is dropped and the securebits locked here already (the zygote
    # keeps its effective capabilities and never executes a program); the ctypes structures
    # are built once.
    import ctypes

    libc = _W["libc"]
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if prctl(28, 0x2F, 0, 0, 0) != 0:  # PR_SET_SECUREBITS: NOROOT, NO_SETUID_FIXUP, locked
        raise OSError(ctypes.get_errno(), "securebits")
    for cap in range(64):
        if prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP; EINVAL past the last capability
            if ctypes.get_errno() == 22:
                break
            raise OSError(ctypes.get_errno(), "capbset_drop %d" % cap)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]  # fmt: skip

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    class Attr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class Beneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    prog = bytes.fromhex(cfg["seccomp"])
    ll = cfg["landlock"]
    _W["iso"] = {
        "cap_header": Header(0x20080522, 0),
        "cap_data": (Data * 2)(),
        "prog": prog,  # kept alive for the pointer below
        "fprog": Fprog(len(prog) // 8, prog),
        "ll_attr": Attr(ll["fs"], ll["net"], ll["scoped"]),
        "ll_rule": Beneath(0, 0),
        "byref": ctypes.byref,
        "sizeof": ctypes.sizeof(Attr),
        "get_errno": ctypes.get_errno,
    }


def _warm_isolate(cfg):
    # In the child, before it waits for code: limits, no capabilities, Landlock, seccomp.
    import os
    import random
    import resource

    libc = _W["libc"]
    iso = _W["iso"]
    byref, errno = iso["byref"], iso["get_errno"]
    lim = cfg["limits"]

    def setl(res, value):
        if value is not None:
            resource.setrlimit(res, (value, value))

    setl(resource.RLIMIT_AS, lim.get("memory"))
    setl(resource.RLIMIT_NOFILE, lim["open_files"])
    setl(resource.RLIMIT_FSIZE, lim["file_size"])
    setl(resource.RLIMIT_CORE, 0)
    # Processes are counted per user across the worker: allow what the zygote's chains use.
    setl(resource.RLIMIT_NPROC, lim["processes"] + _W.get("live", 6))
    # The CPU limit is set per call (_warm_run): it counts from the request, not from here.
    # Capabilities: every one dropped (uid 0 of the namespace stays, mapped to an unprivileged
    # host id; the locked securebits keep root from getting them back).
    if libc.syscall(126, byref(iso["cap_header"]), byref(iso["cap_data"])) != 0:  # capset
        raise OSError(errno(), "capset")
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(errno(), "no_new_privs")
    _warm_landlock(cfg["landlock"])
    # The short filter taking the zygote's extra calls away, on top of the zygote's.
    if libc.syscall(317, 1, 0, byref(iso["fprog"])) != 0:  # seccomp(SET_MODE_FILTER)
        raise OSError(errno(), "seccomp")
    # Fresh randomness: the random module's state was copied from the zygote.
    random.seed()


def _warm_warmup():
    # Take the copy-on-write faults and first-use costs of compiling and running code now,
    # before the request, not while it waits.
    import json
    import sys

    json.loads(json.dumps({"code": "x", "stdin": None, "cpu": None}))
    ns = {"__builtins__": __builtins__}
    exec(compile("x = [i * 2 for i in range(20)]\ny = {'a': x}\nprint\n", "<warm>", "exec"), ns)
    type(sys)("__main__")
    sys.stdout.flush()


def _warm_landlock(ll):
    import os

    libc = _W["libc"]
    iso = _W["iso"]
    byref, errno, syscall = iso["byref"], iso["get_errno"], libc.syscall
    rs = syscall(444, byref(iso["ll_attr"]), iso["sizeof"], 0)
    if rs < 0:
        raise OSError(errno(), "landlock_create_ruleset")
    rule = iso["ll_rule"]
    tmp = os.open("/tmp", os.O_PATH | os.O_CLOEXEC)
    for fd, allowed in _W["rule_fds"] + [(tmp, ll["tmp"])]:
        rule.allowed, rule.fd = allowed, fd
        if syscall(445, rs, 1, byref(rule), 0) != 0:
            raise OSError(errno(), "landlock_add_rule %d" % fd)
    if syscall(446, rs, 0) != 0:
        raise OSError(errno(), "landlock_restrict_self")
    os.close(rs)
    os.close(tmp)


def _warm_run(cfg):
    # C, isolated: read requests from descriptor 3 (one for a run, many for a session).
    import json
    import os
    import resource
    import sys

    import builtins as builtins_mod
    import time

    req_in = os.fdopen(3, "rb")
    session = False
    saved_builtins = dict(vars(builtins_mod))
    saved_streams = (sys.stdout, sys.stderr)
    getrusage, self_usage = resource.getrusage, resource.RUSAGE_SELF
    write, exit_now, monotonic = os.write, os._exit, time.monotonic
    while True:
        line = req_in.readline()
        if not line:
            return
        t0 = monotonic()
        req = json.loads(line)
        if req.get("session"):
            session = True
            continue
        stdin = req.get("stdin")
        if stdin is not None:
            fd = os.memfd_create("stdin")
            os.write(fd, stdin.encode())
            os.lseek(fd, 0, 0)
            os.dup2(fd, 0)
            os.close(fd)
        cpu = req.get("cpu")
        if cpu:
            # Whole seconds from now. As PID 1 the child ignores SIGXCPU's default action: a
            # run gets the hard limit's SIGKILL a second later; a session (whose hard limit
            # must stay raisable for the next call) exits from a handler, with 128 + SIGXCPU.
            ru = resource.getrusage(resource.RUSAGE_SELF)
            soft = max(1, round(ru.ru_utime + ru.ru_stime + cpu))
            if session:
                import signal

                signal.signal(signal.SIGXCPU, lambda *_: exit_now(128 + signal.SIGXCPU))
                resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
            else:
                resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
        main = _W.get("main")
        if main is None:
            main = _W["main"] = type(sys)("__main__")
            sys.modules["__main__"] = main
        ns = main.__dict__
        if _W["cfg"].get("guard") and "__builtins__" not in ns:
            _pysandbox_guard(ns, _W["cfg"]["guard"])
        elif "__builtins__" not in ns:
            import builtins

            builtins.exit = builtins.quit = sys.exit
        src = req.get("code", "").encode()
        name = req.get("name") or "<string>"
        if name != "<string>":
            ns["__file__"] = name
        status = 0
        if req.get("api") is not None:
            # The Python package's exec/eval/call with data in and out (see _pysandbox_api).
            _pysandbox_api(ns, src, name, _W["boot"], req["api"])
            src = b"pass"
        try:
            code = compile(src, name, "exec", dont_inherit=True)
            with _pysandbox_limited():
                exec(code, ns)
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as exc:
            if isinstance(exc, MemoryError):
                ns.clear()
            _pysandbox_report_limit(exc)
            _pysandbox_traceback(exc, name, src, _W["boot"])
            status = 1
        # The code may have replaced builtins or sys's streams: put back what this needs.
        vars(builtins_mod).update(saved_builtins)
        sys.stdout, sys.stderr = saved_streams
        sys_flush()
        # The answer: the zygote replies as soon as it sees it (the namespace is torn down
        # after, off the request's path).
        ru = getrusage(self_usage)
        if not isinstance(status, int):
            status = 1
        done = '{"exit": %d, "cpu": %r, "maxrss": %d, "run": %r}' % (
            status, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, monotonic() - t0)
        write(4, b"\0done " + done.encode() + b"\n")
        if not session:
            exit_now(status & 0xFF)


def _warm_dispatch(child, req):
    import json
    import os

    data = json.dumps(req).encode() + b"\n"
    while data:
        data = data[os.write(child["req"], data):]


def _warm_serve(child, req, session=False):
    # Send one request to C and collect its output, report and end (bounded, with a deadline).
    import json
    import os
    import select
    import time

    cfg = _W["cfg"]
    lim = cfg["limits"]
    cap = int(lim["output"])
    wall = float(req.get("wall") or lim["wall"])
    start = time.monotonic()
    deadline = start + wall
    msg = {"code": req.get("code", ""), "stdin": req.get("stdin"), "cpu": lim.get("cpu"),
           "api": req.get("api"), "name": req.get("name")}  # fmt: skip
    try:
        _warm_dispatch(child, msg)
    except OSError:
        pass
    bufs = {child["out"]: bytearray(), child["err"]: bytearray(), child["res"]: bytearray()}
    totals = {fd: 0 for fd in bufs}
    open_fds = set(bufs)
    killed = False
    done = None
    while open_fds:
        if killed:
            # Everything in the request's namespace dies with B: the pipes end shortly.
            left = 5.0
        else:
            left = deadline - time.monotonic()
        if not killed and left <= 0:
            try:
                os.kill(child["pid"], 9)
            except OSError:
                pass
            killed = True
            left = 5.0
        r, _, _ = select.select(list(open_fds), [], [], left)
        if killed and not r:
            break

        def take(fd):
            # Read what is there, keep up to the stream's bound; False at end of file.
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                data = b""
            if not data:
                return False
            totals[fd] += len(data)
            room = (cap if fd in (child["out"], child["err"]) else 16 << 20) - len(bufs[fd])
            if room > 0:
                bufs[fd] += data[:room]
            return True

        for fd in r:
            if not take(fd):
                open_fds.discard(fd)
        if not killed:
            rep = bytes(bufs[child["res"]])
            marker = rep.find(b"\0done ")
            if marker >= 0 and rep.endswith(b"\n"):
                done = json.loads(rep[marker + 6:].decode())
                bufs[child["res"]] = bytearray(rep[:marker])
                # Output written before the answer is already in the pipes: drain it.
                for fd in (child["out"], child["err"]):
                    while select.select([fd], [], [], 0)[0] and take(fd):
                        pass
                break
    wall_time = time.monotonic() - start
    report = bytes(bufs[child["res"]]).decode("utf-8", "replace")
    at = report.find("\0result\n")
    result = None
    if at >= 0:
        report, result = report[:at], report[at + 8:]
    limit = None
    for line in report.splitlines():
        if line.startswith("limit "):
            limit = line[6:].strip()
            break
    resp = {
        "id": req.get("id"),
        "stdout": bytes(bufs[child["out"]]).decode("utf-8", "replace"),
        "stderr": bytes(bufs[child["err"]]).decode("utf-8", "replace"),
        "stdout_truncated": totals[child["out"]] > cap,
        "stderr_truncated": totals[child["err"]] > cap,
        "wall_time": wall_time,
        "result": result,
    }
    if done is not None:
        resp.update(exit_code=done["exit"], signal=None, cpu_time=done["cpu"],
                    peak_memory=done["maxrss"] * 1024, limit=limit, run_time=done.get("run"))  # fmt: skip
        if resp["stdout_truncated"] or resp["stderr_truncated"]:
            resp["limit"] = resp["limit"] or "output"
        if not session:
            # The child exits by itself; B and the namespace go with it. Reaped later.
            _warm_release(child)
        return resp
    # The child ended without answering (or was killed): its status, from the kernel.
    try:
        _, status, ru = os.wait4(child["pid"], 0)
        rec = {
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "cpu": ru.ru_utime + ru.ru_stime,
            "maxrss": ru.ru_maxrss,
        }
    except ChildProcessError:
        rec = {}
    _warm_release(child)
    sig = rec.get("signal")
    if killed:
        limit = "wall"
        sig = 9
    elif (
        sig == 24
        or (sig == 9 and lim.get("cpu") and rec.get("cpu", 0) >= lim["cpu"] - 0.05)
        or rec.get("exit") == 128 + 24
    ):
        # As PID 1, the child ignores SIGXCPU: the hard limit's SIGKILL ends it.
        limit = "cpu"
    elif sig == 25:
        limit = "file_size"
    elif not rec:
        # No status: the child was reaped elsewhere or never started.
        resp["anomaly"] = True
    if limit is None and (resp["stdout_truncated"] or resp["stderr_truncated"]):
        limit = "output"
    resp.update(exit_code=rec.get("exit"), signal=sig, cpu_time=rec.get("cpu", 0.0),
                peak_memory=rec.get("maxrss", 0) * 1024, limit=limit)  # fmt: skip
    if session:
        resp["ended"] = True
    return resp



# ---- warm mode (appended to support.py for `pysandbox worker`) ------------------------------
# The zygote: runs as uid 0 of the jail's user namespace with its capabilities and only ever
# runs this trusted code. It keeps one request child forked and isolated ahead of time and
# hands the child's pipes to the host, which then talks to the child directly:
#
#   host ══ctl (SOCK_SEQPACKET, descriptor 0)══ zygote ── C: PID 1 of a new PID namespace,
#     ║                                                      a fresh /tmp, no capabilities, its
#     ╚═══ request, stdout, stderr, report pipes ═══════════ own Landlock domain, the strict
#                                                            seccomp filter; waits for its request
#
# Zygote to host, one JSON message each: {"ready": true}; {"child": seq, "session": bool}
# carrying the host's ends of the child's pipes (SCM_RIGHTS: request write end, stdout, stderr
# and report read ends), sent just before the fork; {"exit": seq, ...}, how a child ended, when
# the host asks. Host to zygote: {"op": "session", "idle": s} (a child with a mount namespace
# and /tmp of its own, kept for many calls), {"op": "status", "seq": n}, {"op": "kill", "seq":
# n} (its wall clock ran out). End of file on ctl: everything stops. Descriptor 6 holds the
# configuration (JSON): guard, Landlock rules, seccomp program, limits, modules to preload,
# whether to prefork and which request path to warm up.

_W = {}

# Fixed descriptors of a child: 0 stdin, 1 stdout, 2 stderr, 3 requests, 4 the report. During
# the warm-up 1, 2 and 4 point at /dev/null and the pipes wait at 5, 6 and 7.
_CHILD_FDS = 8


def _pysandbox_warm(ns, boot):
    import array
    import gc
    import json
    import os
    import select
    import signal
    import socket
    import sys

    with open(6, "rb") as f:
        cfg = json.loads(f.read())
    _W["cfg"] = cfg
    _W["boot"] = boot
    ctl = socket.socket(fileno=0)
    for name in cfg.get("preload", []):
        try:
            __import__(name)
        except Exception:
            pass
    _warm_prepare(cfg)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # Objects made so far live in every child: keep the collector away from them, so that the
    # children's collections do not copy their pages (copy-on-write).
    gc.collect()
    gc.freeze()
    poller = select.poll()
    poller.register(0, select.POLLIN)
    children = {}  # pidfd -> (seq, pid, session)
    ended = {}  # seq -> how it ended (the last ones), for the host to ask about
    asked = set()
    state = {"seq": 0, "request": None, "sessions": 0}
    # Every page the zygote writes costs a fault, and a copy while a child shares it: the path
    # run once per child (below, _warm_ruleset, _warm_fork, _warm_fresh_tmp) imports nothing,
    # makes no function and uses names bound once.
    pipe, close, set_blocking, sendmsg = os.pipe, os.close, os.set_blocking, ctl.sendmsg
    register, pidfd_open, fork = poller.register, _warm_pidfd_open, _warm_fork
    ruleset, fd_array = _warm_ruleset, array.array
    rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    said = (b'{"child":%d,"session":false}', b'{"child":%d,"session":true}')

    def spawn(session):
        # Everything for the next child is made before the fork, the host's ends of its pipes
        # handed over too: after a fork, every page the zygote writes is copied, so it does as
        # little as possible until the child ends.
        state["seq"] = seq = state["seq"] + 1
        _W["live"] = 3 + state["sessions"]
        if _W["ruleset"] is not None:
            close(_W["ruleset"])
        _W["ruleset"] = ruleset()
        req_r, req_w = pipe()
        out_r, out_w = pipe()
        err_r, err_w = pipe()
        res_r, res_w = pipe()
        set_blocking(req_w, False)
        set_blocking(out_r, False)
        set_blocking(err_r, False)
        set_blocking(res_r, False)
        try:
            host = fd_array("i", (req_w, out_r, err_r, res_r))
            sendmsg([said[session] % seq], [rights + (host,)])
        finally:
            close(req_w)
            close(out_r)
            close(err_r)
            close(res_r)
        pid = fork(session, req_r, out_w, err_w, res_w)
        close(req_r)
        close(out_w)
        close(err_w)
        close(res_w)
        pidfd = pidfd_open(pid)
        children[pidfd] = (seq, pid, session)
        register(pidfd, POLLIN)
        if session:
            state["sessions"] += 1
        return seq

    def answer(seq):
        rec = ended.get(seq)
        if rec is not None:
            code, sig, cpu, maxrss = rec
            rec = {"exit": seq, "code": code, "signal": sig, "cpu": cpu, "maxrss": maxrss}
            _warm_send(ctl, rec)
        else:
            asked.add(seq)

    _warm_send(ctl, {"ready": True})
    prefork = cfg.get("prefork", True)
    POLLIN = select.POLLIN
    poll, unregister, wait4, fresh_tmp = poller.poll, poller.unregister, os.wait4, _warm_fresh_tmp
    exited, exit_code = os.WIFEXITED, os.WEXITSTATUS
    signaled, term_sig = os.WIFSIGNALED, os.WTERMSIG
    try:
        while True:
            if prefork and state["request"] is None:
                state["request"] = spawn(False)
            for fd, _ in poll():
                if fd == 0:
                    try:
                        msg = ctl.recv(1 << 16)
                    except OSError:
                        msg = b""
                    if not msg:
                        return
                    try:
                        req = json.loads(msg)
                        op = req.get("op")
                    except (ValueError, AttributeError):
                        req, op = {}, None
                    if op == "session":
                        _W["idle"] = float(req.get("idle") or 300)
                        spawn(True)
                    elif op == "status":
                        answer(int(req.get("seq", 0)))
                    elif op == "kill":
                        # The host's wall clock ran out: the child, and its namespace with it.
                        for c in children.values():
                            if c[0] == req.get("seq"):
                                os.kill(c[1], signal.SIGKILL)
                    else:
                        _warm_send(ctl, {"error": "unknown request %r" % (msg[:100],)})
                    continue
                seq, child, session = children.pop(fd)
                unregister(fd)
                close(fd)
                # Readable pidfd: the child has ended, and with it (as PID 1) its namespace.
                _, status, ru = wait4(child, 0)
                ended[seq] = (
                    exit_code(status) if exited(status) else None,
                    term_sig(status) if signaled(status) else None,
                    ru.ru_utime + ru.ru_stime,
                    ru.ru_maxrss,
                )  # fmt: skip
                ended.pop(seq - 64, None)
                if session:
                    state["sessions"] -= 1
                if seq in asked:
                    asked.discard(seq)
                    answer(seq)
                if not session and seq == state["request"]:
                    state["request"] = None
                    fresh_tmp()
    except OSError as exc:
        # The host went away (or a setup call failed): stop, the jail goes with us.
        print("pysandbox zygote: %s" % (exc,), file=sys.stderr)
    finally:
        for child in children.values():
            try:
                os.kill(child[1], signal.SIGKILL)
            except OSError:
                pass


def _warm_send(ctl, obj, fds=()):
    import array
    import json
    import socket

    data = json.dumps(obj, separators=(",", ":")).encode()
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    ctl.sendmsg([data], anc)


def _warm_prepare(cfg):
    # Zygote start: everything the children's isolation needs that can be done once. The
    # capability bounding set is dropped and the securebits locked here already (the zygote
    # keeps its effective capabilities and never executes a program); the guard's builtins are
    # made once.
    import builtins
    import ctypes
    import fcntl
    import os
    import sys

    libc = ctypes.CDLL(None, use_errno=True)
    _W["libc"] = libc
    _W["ruleset"] = None
    _W["fork"] = ctypes.PyDLL(None, use_errno=True).fork
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def check(ret, what):
        if ret != 0:
            raise OSError(ctypes.get_errno(), what)

    check(prctl(28, 0x2F, 0, 0, 0), "securebits")  # NOROOT, NO_SETUID_FIXUP, locked
    for cap in range(64):
        if prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP; EINVAL past the last capability
            if ctypes.get_errno() == 22:
                break
            raise OSError(ctypes.get_errno(), "capbset_drop %d" % cap)

    # Descriptors 3 to 7 stay taken (by /dev/null) so that the pipes made for each child never
    # land on the numbers the child moves them to; what the zygote keeps sits above 100.
    def high(fd):
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
        os.close(fd)
        return moved

    null = high(os.open("/dev/null", os.O_RDWR))
    for fd in range(3, _CHILD_FDS):
        os.dup2(null, fd)
    _W["null"] = null

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

    # Landlock: the rules' paths are opened once; each child gets a ruleset of its own, built by
    # the zygote before the fork, to which it adds its /tmp (a fresh tmpfs each time: Landlock
    # rules name inodes, and a path below a mount point never meets the rules of the directory
    # the mount covers) before it enforces it, which makes a domain of its own.
    ll = cfg["landlock"]
    _W["rule_fds"] = [(high(os.open(path, os.O_PATH | os.O_CLOEXEC)), allowed)
                      for path, allowed in ll["rules"]]  # fmt: skip
    os.chdir("/")
    prog = bytes.fromhex(cfg["seccomp"])
    iso = _W["iso"] = {
        "cap_header": Header(0x20080522, 0),
        "cap_data": (Data * 2)(),
        "prog": prog,  # kept alive for the pointer below
        "fprog": Fprog(len(prog) // 8, prog),
        "ll_attr": Attr(ll["fs"], ll["net"], ll["scoped"]),
        "ll_size": ctypes.sizeof(Attr),
        "ll_rule": Beneath(0, 0),
        "get_errno": ctypes.get_errno,
    }
    # The structures' addresses (byref) taken once, for the calls made per child: "x_ref" for
    # each "x" above (the structures stay alive in _W).
    for name in ("cap_header", "cap_data", "fprog", "ll_attr", "ll_rule"):
        iso[name + "_ref"] = ctypes.byref(iso[name])
    size = int(cfg["limits"]["tmp_size"])
    _W["tmp_opts"] = ("mode=1777,size=%d,nr_inodes=%d" % (size, max(1024, size // 1024))).encode()
    _W["self_pidfd"] = high(_warm_pidfd_open(os.getpid()))
    # What every child's code starts with: the guard's builtins (made here, once), or the
    # interpreter's with exit() and quit() as `site` would add them.
    guard = cfg.get("guard")
    tmpl = {}
    if guard:
        _pysandbox_guard(tmpl, guard)
    else:
        builtins.exit = builtins.quit = sys.exit
    _W["builtins"] = tmpl.get("__builtins__")
    _W["saved"] = (dict(vars(builtins)), sys.stdout, sys.stderr)


def _warm_ruleset():
    # A Landlock ruleset with the jail's rules (not /tmp: the child adds its own).
    iso = _W["iso"]
    syscall = _W["libc"].syscall
    rs = syscall(444, iso["ll_attr_ref"], iso["ll_size"], 0)  # landlock_create_ruleset
    if rs < 0:
        raise OSError(iso["get_errno"](), "landlock_create_ruleset")
    rule, rule_ref = iso["ll_rule"], iso["ll_rule_ref"]
    for fd, allowed in _W["rule_fds"]:
        rule.allowed, rule.fd = allowed, fd
        if syscall(445, rs, 1, rule_ref, 0) != 0:  # landlock_add_rule, PATH_BENEATH
            err = iso["get_errno"]()
            _W["libc"].close(rs)
            raise OSError(err, "landlock_add_rule")
    return rs


def _warm_pidfd_open(pid):
    import os

    if hasattr(os, "pidfd_open"):
        return os.pidfd_open(pid)
    import ctypes

    fd = _W["libc"].syscall(434, pid, 0)  # Python 3.8
    if fd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_open")
    return fd


def _warm_fresh_tmp():
    # A new, empty /tmp for the next request (the last one's is detached; nothing uses it any
    # more: its request's whole PID namespace has ended). Sessions have their own.
    if _W["libc"].umount2(b"/tmp", 2) != 0:  # MNT_DETACH
        raise OSError(_W["iso"]["get_errno"](), "umount /tmp")
    _warm_mount_tmp()


def _warm_mount_tmp():
    if _W["libc"].mount(b"tmpfs", b"/tmp", b"tmpfs", 6, _W["tmp_opts"]) != 0:  # nosuid, nodev
        raise OSError(_W["iso"]["get_errno"](), "mount /tmp")


def _warm_fork(session, *ends):
    # Fork C, PID 1 of a new PID namespace. A request child shares the zygote's mount namespace
    # and its fresh /tmp (a worker runs one request at a time); a session's has a mount
    # namespace and /tmp of its own.
    libc = _W["libc"]
    # Each child is PID 1 of a new namespace: first back to the zygote's own (a new one can
    # only be made from the namespace the caller is in), then a new one for the next child.
    # Both before the fork, where the zygote's writes cost less.
    if libc.setns(_W["self_pidfd"], 0x20000000) != 0:  # CLONE_NEWPID
        raise OSError(_W["iso"]["get_errno"](), "setns to the zygote's PID namespace")
    if libc.unshare(0x20000000) != 0:
        raise OSError(_W["iso"]["get_errno"](), "unshare(CLONE_NEWPID)")
    # fork(2) itself, not os.fork(): the zygote has one thread and no at-fork hooks to run but
    # random's (the child reseeds), and CPython's after-fork bookkeeping alone would copy some
    # eighty pages in every child. PyDLL: the GIL stays held across the call.
    pid = _W["fork"]()
    if pid == 0:
        _warm_child(session, ends)
    if pid < 0:
        raise OSError(_W["iso"]["get_errno"](), "fork")
    return pid


def _warm_child(session, ends):
    # C: PID 1 of its namespace (everything it leaves behind dies with it). Isolate, take the
    # first-use costs of the request path (warm-up), then wait for the request.
    import os

    code = 71
    try:
        req_r, out_w, err_w, res_w = ends
        null = _W["null"]
        os.setsid()
        for fd, target in ((req_r, 3), (out_w, 5), (err_w, 6), (res_w, 7)):
            os.dup2(fd, target)
        for target in (0, 1, 2, 4):
            os.dup2(null, target)
        if session:
            libc = _W["libc"]
            if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
                raise OSError(_W["iso"]["get_errno"](), "unshare(CLONE_NEWNS)")
            if libc.mount(None, b"/", None, 0x4000 | 0x40000, None) != 0:  # MS_REC|MS_PRIVATE
                raise OSError(_W["iso"]["get_errno"](), "mount private")
            _warm_mount_tmp()
        os.chdir("/tmp")
        _warm_isolate()
        os.closerange(_CHILD_FDS, 1 << 20)
        code = 72
        # The warm-up: the request path once, from a pipe of its own, with its output going to
        # /dev/null.
        # A worker of the Python package also takes its exec/eval/call path.
        warm_r, warm_w = os.pipe()
        warm = b"x = [i for i in range(3)]\nprint(x, 1 + 1)"
        api = b'{"op": "exec", "input": {"d": [["globals", {"d": [["n", {"i": "1"}]]}]]}}'
        for data in (b"",) + ((api,) if _W["cfg"].get("api") else ()):
            os.write(warm_w, b"%d 0 -1 %d\n%s%s" % (len(warm), len(data), warm, data))
            body, sizes = _warm_next(warm_r, bytearray(), None)
            _warm_request(body, sizes, session, warm=True)
        os.close(warm_r)
        os.close(warm_w)
        _warm_main(session)
        for src, target in ((5, 1), (6, 2), (7, 4)):
            os.dup2(src, target)
            os.close(src)
        _warm_loop(session)
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


def _warm_isolate():
    # In the child, before it waits for code: limits, no capabilities, Landlock, seccomp, fresh
    # randomness.
    import os
    import resource
    import sys

    libc = _W["libc"]
    iso = _W["iso"]
    errno = iso["get_errno"]
    lim = _W["cfg"]["limits"]
    setrlimit = resource.setrlimit
    for res, value in (
        (resource.RLIMIT_AS, lim.get("memory")),
        (resource.RLIMIT_NOFILE, lim["open_files"]),
        (resource.RLIMIT_FSIZE, lim["file_size"]),
        (resource.RLIMIT_CORE, 0),
        # Processes are counted per user across the jail: allow what the zygote's use.
        (resource.RLIMIT_NPROC, lim["processes"] + _W["live"]),
    ):
        if value is not None:
            setrlimit(res, (value, value))
    # The CPU limit is set per call (_warm_request): it counts from the request, not from here.
    # Capabilities: every one dropped (uid 0 of the namespace stays, mapped to an unprivileged
    # host id; the locked securebits keep root from getting them back).
    syscall = libc.syscall
    if syscall(126, iso["cap_header_ref"], iso["cap_data_ref"]) != 0:  # capset
        raise OSError(errno(), "capset")
    # no_new_privs is the jail's already (its init set it before its seccomp filter) and cannot
    # be cleared: every process of the jail has it.
    rs = _W["ruleset"]
    rule = iso["ll_rule"]
    rule.allowed, rule.fd = _W["cfg"]["landlock"]["tmp"], os.open("/tmp", os.O_PATH)
    if syscall(445, rs, 1, iso["ll_rule_ref"], 0) != 0:  # landlock_add_rule: this child's /tmp
        raise OSError(errno(), "landlock_add_rule /tmp")
    if syscall(446, rs, 0) != 0:  # landlock_restrict_self: a domain of its own
        raise OSError(errno(), "landlock_restrict_self")
    # The short filter taking the zygote's extra calls away, on top of the zygote's.
    if syscall(317, 1, 0, iso["fprog_ref"]) != 0:  # seccomp(SET_MODE_FILTER)
        raise OSError(errno(), "seccomp")
    # The random module's state is a copy of the zygote's (fork(2) runs no at-fork hook):
    # reseed it from the kernel. os.urandom keeps no state in user space.
    rnd = sys.modules.get("random")
    if rnd is not None:
        rnd.seed()


def _warm_loop(session):
    # C, isolated: read requests from descriptor 3, one for a run, many for a session; a session
    # ends after its idle time without a call.
    import os

    idle = _W.get("idle") if session else None
    pending = bytearray()
    while True:
        body, sizes = _warm_next(3, pending, idle)
        status = _warm_request(body, sizes, session)
        if not session:
            os._exit(status & 0xFF)


def _warm_next(fd, pending, idle):
    # The next request on `fd`: a line of four byte counts (code, file name, stdin or -1, the
    # package's API data or 0), then those bytes.
    import os
    import select

    read = os.read

    def more():
        if idle and not select.select([fd], [], [], idle)[0]:
            os.write(4, b"\0idle\n")
            os._exit(0)
        chunk = read(fd, 1 << 16)
        if not chunk:
            os._exit(0)
        pending.extend(chunk)

    at = pending.find(b"\n")
    while at < 0:
        more()
        at = pending.find(b"\n")
    sizes = [int(x) for x in bytes(pending[:at]).split()]
    del pending[: at + 1]
    need = sum(n for n in sizes if n > 0)
    while len(pending) < need:
        more()
    body = bytes(pending[:need])
    del pending[:need]
    return body, sizes


def _warm_main(session):
    # The module the code runs in (a fresh one per child; a session keeps its own), made before
    # the request arrives.
    import sys

    main = type(sys)("__main__")
    sys.modules["__main__"] = main
    if _W["builtins"] is not None:
        main.__dict__["__builtins__"] = _W["builtins"]
    _W["ns"] = main.__dict__


def _warm_request(body, sizes, session, warm=False):
    # One request. The answer, on descriptor 4, ends with a "\0done {...}" line the host waits
    # for (the namespace is torn down after, off the request's path).
    import builtins
    import json
    import os
    import resource

    # Taken before the code runs, which may replace any of them.
    write, getrusage, is_int = os.write, resource.getrusage, isinstance
    n_code, n_name, n_stdin, n_api = sizes
    src = body[:n_code]
    at = n_code + n_name
    name = body[n_code:at].decode("utf-8", "replace") or "<string>"
    if n_stdin >= 0:
        # A nameless file of the request's /tmp, counted in its size like any file the code
        # writes (memfd_create is refused: RLIMIT_AS does not count a memfd's pages).
        fd = os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
        os.write(fd, body[at : at + n_stdin])
        os.lseek(fd, 0, 0)
        os.dup2(fd, 0)
        os.close(fd)
        at += n_stdin
    cpu = _W["cfg"]["limits"].get("cpu")
    if cpu and not warm:
        # Whole seconds from now. As PID 1 the child ignores SIGXCPU's default action: a run
        # gets the hard limit's SIGKILL a second later; a session (whose hard limit must stay
        # raisable for the next call) exits from a handler, with 128 + SIGXCPU.
        ru = getrusage(resource.RUSAGE_SELF)
        soft = max(1, round(ru.ru_utime + ru.ru_stime + cpu))
        if session:
            import signal

            signal.signal(signal.SIGXCPU, lambda *_: os._exit(128 + signal.SIGXCPU))
            resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        else:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    if warm:
        ns = {"__builtins__": _W["builtins"] or builtins}
    else:
        ns = _W["ns"]
    if name != "<string>":
        ns["__file__"] = name
    saved, out, err = _W["saved"]
    status = 0
    try:
        if n_api > 0:
            # The Python package's exec/eval/call with data in and out (see _pysandbox_api).
            _pysandbox_api(ns, src, name, _W["boot"], json.loads(body[at : at + n_api]))
        else:
            code = compile(src, name, "exec", dont_inherit=True)
            if _RECURSION[0]:
                with _pysandbox_limited():
                    exec(code, ns)
            else:
                exec(code, ns)
    except SystemExit as e:
        status = e.code if is_int(e.code, int) else (0 if e.code is None else 1)
    except BaseException as exc:
        import sys

        vars(builtins).update(saved)
        sys.stdout, sys.stderr = out, err
        if is_int(exc, MemoryError):
            ns.clear()
        _pysandbox_report_limit(exc)
        _pysandbox_traceback(exc, name, src, _W["boot"])
        status = 1
    if session:
        # The code may have replaced builtins or sys's streams: put back what the next call
        # needs.
        import sys

        vars(builtins).update(saved)
        sys.stdout, sys.stderr = out, err
    for stream in (out, err):
        try:
            stream.flush()
        except BaseException:
            pass
    ru = getrusage(resource.RUSAGE_SELF)
    if not is_int(status, int):
        status = 1
    done = '{"exit": %d, "cpu": %r, "maxrss": %d}' % (
        status, ru.ru_utime + ru.ru_stime, ru.ru_maxrss)  # fmt: skip
    write(4, b"\0done " + done.encode() + b"\n")
    return status

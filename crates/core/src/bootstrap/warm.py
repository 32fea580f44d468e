

# ---- warm mode (appended to support.py for `pysandbox worker`) ------------------------------
# The zygote: CPython with modules preloaded and the request path warm. Every process,
# namespace and isolation call is made by pysandbox's Rust library (libpysandbox_zygote.so,
# bound read-only into the jail), which this code loads once: the same isolation steps as a cold
# run, in the same code (crates/core/src/isolate.rs). This file holds no syscall numbers and no
# kernel structures; what it reads and writes are the typed frames of docs/protocol.md.
#
#   host ══ctl (SOCK_SEQPACKET, descriptor 0)══ zygote (the library's loop) ── fork ──┐
#     ║                                                                              │
#     ╚═══ request, stdout, stderr, report pipes and a pidfd ════════════════════ child C,
#          (handed over by the zygote)                        isolated by the library, then
#                                                             back here: warm-up, request, exit
#
# Descriptor 6 holds the configuration (JSON, the library reads it too): the library's path,
# the protocol version, the guard, the modules to preload, which request path to warm up.

_W = {}


def _pysandbox_warm(ns, boot):
    import _imp
    import gc
    import json
    import os
    import sys

    cfg = json.loads(os.pread(6, 1 << 24, 0))
    _W["cfg"] = cfg
    if cfg.get("bind_now"):
        # Added by the jail so that the dynamic loader resolved every symbol here, once, and
        # no child resolves one itself (warm::adds_bind_now): not the code's.
        os.environ.pop("LD_BIND_NOW", None)
    _W["boot"] = boot
    # The library is an extension module (what an import of it does, without importlib; not
    # ctypes, whose objects every fork would copy the page tables of). Its functions keep the
    # GIL (the zygote has one thread; the library forks).
    if "t" in getattr(sys, "abiflags", ""):
        # The module is built for the interpreter's object layout with the GIL.
        print("pysandbox zygote: warm mode needs an interpreter built with the GIL; %s is "
              "free-threaded" % sys.executable, file=sys.stderr)  # fmt: skip
        os._exit(125)
    spec = type(sys.implementation)(name="pysandbox_zygote", origin=cfg["library"])
    try:
        lib = _imp.create_dynamic(spec)
    except ImportError as exc:
        print("pysandbox zygote: %s: %s; the binary and the library come from different "
              "builds? rebuild both" % (cfg["library"], exc), file=sys.stderr)  # fmt: skip
        os._exit(125)
    sys.modules.pop("pysandbox_zygote", None)
    # Descriptors 0 to 8 are the children's own (the library places their pipes there): taken
    # (by /dev/null) before the preloads, so that no file a preload keeps open has one of
    # those numbers, which a child's copy of its object would close one day. The library
    # gives a child /dev/null under the numbers such objects hold above them.
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    for fd in range(9):
        try:
            os.fstat(fd)
        except OSError:
            os.dup2(null, fd, inheritable=False)
    if null > 8:
        os.close(null)
    if lib.protocol() != cfg["protocol"]:
        print("pysandbox zygote: %s speaks another protocol than the binary; rebuild both"
              % cfg["library"], file=sys.stderr)  # fmt: skip
        os._exit(125)
    for name in cfg.get("preload", []):
        try:
            __import__(name)
        except Exception:
            pass
    _warm_prepare(cfg)
    # The library forks with glibc's fork(), which runs C at-fork handlers but not Python's:
    # in the child, once isolated, it calls what os.fork() would (the interpreter's own
    # reinitialisation, then every os.register_at_fork(after_in_child=...) hook: random
    # reseeds, logging remakes its locks, matplotlib drops fonts whose files the child does not
    # have open) before returning.
    # Objects made so far live in every child: keep the collector away from them, so that the
    # children's collections do not copy their pages (copy-on-write).
    gc.collect()
    gc.freeze()
    # Returns in the zygote when the host has gone (0) or it could not start (-1); in a child,
    # once it is isolated and past the after-fork hooks: 1 for a fresh request, 2 for a
    # session, plus 4 if its request is already waiting.
    role = lib.serve(6, 0)
    if role <= 0:
        sys.stderr.flush()
        os._exit(0 if role == 0 else 125)
    _W["lib"], _W["trace"] = lib, bool(cfg.get("trace"))
    _warm_child(role & 3 == 2, role & 4)


def _warm_prepare(cfg):
    # What every child's code starts with: the guard's builtins (made here, once), or the
    # interpreter's with exit() and quit() as `site` would add them. Modules the request path
    # needs are imported here, once: an extension module imported in a child is loaded again in
    # every child (resource: a dlopen, some 0.1 ms).
    import builtins
    import json  # noqa: F401
    import resource  # noqa: F401
    import sys

    guard = cfg.get("guard")
    tmpl = {}
    if guard:
        # Also imports the policy's preloads, after making site-packages importable.
        try:
            _pysandbox_guard(tmpl, guard)
        except _PreloadFailed as exc:
            _warm_refuse(str(exc))
        _warm_join_threads()
    else:
        builtins.exit = builtins.quit = sys.exit
    _W["builtins"] = tmpl.get("__builtins__")
    _W["saved"] = (dict(vars(builtins)), sys.stdout, sys.stderr)


def _warm_refuse(message):
    # The policy cannot be served: a Failed frame (docs/protocol.md; `policy` set) on the
    # control socket, which the host reports as the policy's error, and the zygote ends.
    import os

    text = message[:8000].encode("utf-8", "replace")
    os.write(0, _pysandbox_frame(4, b"\1" + _pysandbox_field(text)))
    os._exit(125)


def _warm_join_threads():
    # A preload may leave a Python thread finishing (matplotlib's font cache starts a timer
    # and cancels it): let it end, so that the library's check (one thread, or no fork) judges
    # what stays. A thread that does not end within 2 s makes the worker refuse to start.
    import sys

    threading = sys.modules.get("threading")
    if threading is None:
        return
    for t in threading.enumerate():
        if t is not threading.main_thread():
            t.join(2)


def _warm_child(session, waiting):
    # C, isolated (descriptors: 0 /dev/null, 3 requests; 1, 2, 4 /dev/null during the warm-up
    # while the pipes wait at 5, 6, 7). Take the first-use costs of the request path, then serve.
    import os
    import sys

    code = 1
    try:
        # The warm-up: the request path once, from a pipe of its own, output to /dev/null. A
        # worker of the Python package also takes its exec/eval/call path. Only while nothing
        # is asked yet: a request already waiting (requests back to back) is served at once,
        # and its own run pays those costs, once rather than twice.
        if not waiting:
            warm_r, warm_w = os.pipe()
            warm = b"x = [i for i in range(3)]\nprint(x, 1 + 1)"
            api = b'{"op": "exec", "input": {"d": [["globals", {"d": [["n", {"i": "1"}]]}]]}}'
            for data in (None,) + ((api,) if _W["cfg"].get("api") else ()):
                os.write(warm_w, _warm_request_frame(warm, data))
                _warm_request(_warm_next(warm_r, bytearray()), session, warm=True)
            os.close(warm_r)
            os.close(warm_w)
        if _W["trace"]:
            _W["lib"].mark(1)
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


def _warm_request_frame(code, api):
    # A Request frame as the host makes it (for the warm-up): code, file name, stdin, API data,
    # no files, nothing to collect, not a cell.
    body = bytes((1,)) + _pysandbox_field(code) + _pysandbox_field(b"") + b"\0"
    body += b"\0" if api is None else b"\1" + _pysandbox_field(api)
    body += bytes(8) + b"\0"
    return len(body).to_bytes(4, "little") + body


def _warm_loop(session):
    # C, isolated: read requests from descriptor 3, one for a run, many for a session. Between
    # a session's calls the host keeps the process stopped; its clocks are the host's.
    import os

    pending = bytearray()
    while True:
        if _W["trace"]:
            _W["lib"].readable(3, -1)
            _W["lib"].mark(2)
        status = _warm_request(_warm_next(3, pending), session)
        if not session:
            # The host, woken by the Done frame, usually shares this CPU (a pipe's wake-up is
            # a synchronous one): let it take its answer before this child's exit work.
            try:
                os.sched_yield()
            except OSError:
                pass
            os._exit(status & 0xFF)


def _warm_next(fd, pending):
    # The next Request frame on `fd` (_pysandbox_request). End of file, or anything that is not
    # a request frame: the host is gone, so is this child.
    import os

    read = os.read

    def need(n):
        while len(pending) < n:
            chunk = read(fd, 1 << 16)
            if not chunk:
                os._exit(0)
            pending.extend(chunk)

    need(4)
    size = int.from_bytes(pending[:4], "little")
    need(4 + size)
    body = bytes(pending[4 : 4 + size])
    del pending[: 4 + size]
    try:
        return _pysandbox_request(body)
    except Exception:
        os._exit(0)


def _warm_main(session):
    # The module the code runs in (a fresh one per child; a session keeps its own), made before
    # the request arrives.
    import sys

    main = type(sys)("__main__")
    sys.modules["__main__"] = main
    if _W["builtins"] is not None:
        main.__dict__["__builtins__"] = _W["builtins"]
    _W["ns"] = main.__dict__


def _warm_stdin(data):
    # Descriptor 0 for this request: its bytes in an anonymous file of the request's /tmp
    # (counted in the tmpfs' size, like everything the code keeps), or /dev/null.
    import os

    if data is None:
        fd = os.open("/dev/null", os.O_RDONLY)
    else:
        fd = os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, 0)
    os.dup2(fd, 0)
    os.close(fd)


def _warm_request(fields, session, warm=False):
    # One request; its end is a Done frame on descriptor 4 (the host needs nothing more; the
    # child exits right after, off the request's path).
    import builtins
    import json
    import os
    import resource

    # Taken before the code runs, which may replace any of them.
    write, getrusage, is_int, frame = os.write, resource.getrusage, isinstance, _pysandbox_frame
    src, name, stdin, api = fields["code"], fields["name"], fields["stdin"], fields["api"]
    name = name.decode("utf-8", "replace") or "<string>"
    if session or stdin is not None:
        # (A fresh request child's descriptor 0 is /dev/null already.)
        _warm_stdin(stdin)
    if fields["files"]:
        _pysandbox_files_in(fields["files"])
    collect, collect_files = fields["collect"], _pysandbox_collect
    if warm:
        ns = {"__builtins__": _W["builtins"] or builtins}
    else:
        ns = _W["ns"]
    if name != "<string>":
        ns["__file__"] = name
    if fields.get("args"):
        import sys

        sys.argv[:] = [name] + fields["args"]
    if fields.get("live"):
        import sys

        # A caller streams the output: each line reaches the host as it is printed.
        try:
            sys.stdout.reconfigure(line_buffering=True)
        except Exception:
            pass
    saved, out, err = _W["saved"]
    status = 0
    try:
        if api is not None:
            # The Python package's exec/eval/call with data in and out (see _pysandbox_api).
            _pysandbox_api(ns, src, name, _W["boot"], json.loads(api), cell=fields["cell"])
        elif fields["cell"]:
            _pysandbox_cell(src, name, ns)
        else:
            code = compile(src, name, "exec", dont_inherit=True)
            if _RECURSION[0]:
                with _pysandbox_limited():
                    exec(code, ns)
            else:
                exec(code, ns)
    except SystemExit as e:
        import sys

        status = _W["boot"]["_pysandbox_status"](e.code, sys)
    except BaseException as exc:
        import sys

        vars(builtins).update(saved)
        sys.stdout, sys.stderr = out, err
        if is_int(exc, MemoryError):
            ns.clear()
        _pysandbox_report_limit(exc)
        _pysandbox_raised(exc, name, src, _W["boot"])
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
    if collect:
        try:
            collect_files(collect)
        except BaseException:
            pass
    if not session and not warm:
        # A fresh child ends as a cold run does (run.py's _pysandbox_end: threads joined,
        # atexit, the streams flushed, the globals released, flushed again); a failed flush is
        # the interpreter's status 120. What native code prints through C's stdout is not
        # buffered in a child (the zygote library makes it unbuffered): _exit loses none of it.
        import sys

        if not _W["boot"]["_pysandbox_end"](ns, sys):
            status = 120
    ru = getrusage(resource.RUSAGE_SELF)
    if not is_int(status, int):
        status = 1
    if not -(1 << 31) <= status < 1 << 31:
        status = 1
    cpu = ((ru.ru_utime + ru.ru_stime) * 1e6).__int__()
    done = status.to_bytes(4, "little", signed=True) + cpu.to_bytes(8, "little")
    if not warm and _W["trace"]:
        _W["lib"].mark(3)
        _W["lib"].trace(4)
    write(4, frame(3, done + ru.ru_maxrss.to_bytes(8, "little")))
    return status

# pysandbox's bootstrap for `pysandbox run`, executed with `python -I -S -B -c` inside the jail:
# as source, or compiled on the host and started by a stub (crate::run::COMPILED_STUB) that reads
# this file's code from descriptor 5 and hands over the descriptor's file object, positioned at
# the support's compiled bytes, as `_pysandbox_support`. Descriptors: 3 the code (a sealed memfd), 4 the report pipe to
# the supervisor (typed frames: docs/protocol.md), 5 the rest of the bootstrap (support.py as
# source, or this file and support.py compiled by this interpreter; support read and loaded only
# when needed), 6 the guard's configuration (modes with "guard").
# argv after -c: the mode ("-", or a comma-separated set of "guard" and "repl"), the code's file
# name, then the code's arguments. Not a security layer: the jail around the interpreter is.
import sys


def _pysandbox_run(compiled, main):
    mode, name = sys.argv[1], sys.argv[2]
    del sys.argv[:2]
    with open(3, "rb") as f:
        src = f.read()
    support = {}

    # Where the support's compiled bytes start on descriptor 5: read at that offset (pread) when
    # needed, whatever the code does with the descriptor's position.
    at = None if compiled is None else compiled.tell()

    def load():
        if not support:
            if at is None:
                with open(5, "rb") as f:
                    code = compile(f.read(), "<pysandbox>", "exec")
            else:
                # Compiled once by this interpreter on the host (crate::interp::compiled_bootstrap):
                # the part a run with the guard needs; the rest stays on the descriptor for
                # support's _pysandbox_more to read when needed.
                import marshal
                import posix

                head = posix.pread(5, 12, at)
                n = int.from_bytes(head[8:], "little")
                code = marshal.loads(posix.pread(5, n, at + 12))
                support["_PYSANDBOX_REST"] = at + 12 + n
            exec(code, support)
        return support

    # The code runs in a module of its own: nothing of this bootstrap is in its globals.
    if name != "<string>":
        main.__file__ = name
    sys.modules["__main__"] = main
    if mode != "-":
        return load()["run"](mode.split(","), main, src, name, globals())
    import builtins

    # What `site` would add (the interpreter runs with -S).
    builtins.exit = builtins.quit = sys.exit
    builtins.help = lambda *args, **kwargs: load()["_pysandbox_help"](*args, **kwargs)
    try:
        if name == "<string>":
            # What compile(src, name, "exec") and exec do, without compile(): its first call
            # makes the `_ast` module's classes (10 M instructions, about 1 ms of a cold start),
            # which exec(source) does not need. A named file keeps its name in tracebacks.
            exec(src, main.__dict__)
        else:
            exec(compile(src, name, "exec", dont_inherit=True), main.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        if isinstance(exc, MemoryError):
            # Report before anything else can fail for lack of memory, then free the code's
            # globals so that the traceback can be printed.
            import posix

            # A Limit frame (docs/protocol.md): length, tag 1, the name's length and the name.
            posix.write(4, b"\x0b\0\0\0\x01\x06\0\0\0memory")
            main.__dict__.clear()
        load()["failed"](exc, name, src, globals())


def _pysandbox_exit(code, main):
    # The end of a cold run: what the interpreter's own exit does that code can see, then _exit,
    # without tearing down the interpreter's own state, which no code sees (~1 ms of a cold
    # start). The status and message of SystemExit as the interpreter takes them; then what
    # Py_FinalizeEx does first: threads that are not daemons joined, the atexit functions,
    # sys.stdout and sys.stderr flushed; then the code's globals released (their objects'
    # __del__ run, files left open are flushed and closed, as when the interpreter clears
    # __main__) and the streams flushed again. Unlike the interpreter, no last garbage
    # collection (~0.2 ms): an object in a reference cycle is not finalized, which the language
    # does not promise either. A fresh warm child ends with the same steps (_pysandbox_end, from
    # warm.py's _warm_request). When native code may have printed through C's stdio (_pysandbox_native),
    # which only C's exit() flushes, and when a flush fails (the interpreter reports it): the
    # interpreter's own exit.
    import sys

    if _pysandbox_native(sys):
        raise SystemExit(code)
    import posix

    status = _pysandbox_status(code, sys)
    if not _pysandbox_end(main.__dict__, sys):
        raise SystemExit(status)
    posix._exit(status)


def _pysandbox_end(ns, sys):
    # The end steps of a run that code can see (_pysandbox_exit; a fresh warm child's too):
    # threads joined, atexit, the streams flushed, the globals `ns` released, the streams
    # flushed again. False when a flush failed (the globals then kept, as the interpreter's
    # exit reports the failure before it clears __main__).
    # Neither has anything to do unless imported: not imported here either.
    mods = sys.modules
    threading = mods.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit = mods.get("atexit")
    if atexit is not None:
        atexit._run_exitfuncs()
    if not _pysandbox_flushed(sys):
        return False
    ns.clear()
    return _pysandbox_flushed(sys)


def _pysandbox_native(sys):
    # Whether native code that may print through C's stdio is loaded: ctypes, or an extension
    # module from outside the standard library's lib-dynload.
    # (A module's __file__ read from its dict: getattr on a module without one raises inside,
    # ~15 µs of every cold run over a bare interpreter's modules.)
    mods = sys.modules
    if "_ctypes" in mods:
        return True
    module, dynload = type(sys), None
    try:
        for m in list(mods.values()):
            f = m.__dict__.get("__file__") if type(m) is module else getattr(m, "__file__", None)
            if f is not None and f.endswith(".so"):
                if dynload is None:
                    v = sys.version_info
                    dynload = "%s/%s/python%d.%d/lib-dynload/" % (
                        sys.base_exec_prefix, sys.platlibdir, v[0], v[1])  # fmt: skip
                if not f.startswith(dynload):
                    return True
    except BaseException:
        return True
    return False


def _pysandbox_status(code, sys):
    # The exit status the interpreter takes from SystemExit's code (_Py_HandleSystemExit):
    # 0 for None, an int's low byte (255 beyond C's long), anything else printed on stderr, 1.
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if -(1 << 63) <= code < 1 << 63 else 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def _pysandbox_flushed(sys):
    # sys.stdout and sys.stderr flushed (the interpreter's flush_std_files); False if one fails.
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        if stream is not None and not getattr(stream, "closed", False):
            try:
                stream.flush()
            except Exception:
                return False
    return True


_pysandbox_main = type(sys)("__main__")
try:
    _pysandbox_run(globals().pop("_pysandbox_support", None), _pysandbox_main)
    _pysandbox_code = None
except SystemExit as exc:
    _pysandbox_code = exc.code
_pysandbox_exit(_pysandbox_code, _pysandbox_main)

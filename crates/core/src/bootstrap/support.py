# The rest of pysandbox's bootstrap (see run.py), compiled only when needed: with the guard, in a
# `pysandbox repl` session, or to print a traceback. It arrives on descriptor 5 and runs in a
# namespace of its own. Not a security layer: the jail around the interpreter is.


def run(mode, main, src, name, boot):
    # Modes other than the fast path: the guard (configuration on descriptor 6), the repl.
    import builtins
    import sys

    ns = main.__dict__
    if "guard" in mode:
        with open(6, "rb") as f:
            _pysandbox_guard(ns, f.read().decode())
    else:
        builtins.exit = builtins.quit = sys.exit
        builtins.help = _pysandbox_help
    if "repl" in mode:
        return _pysandbox_repl(ns, src.decode(), boot)
    try:
        exec(compile(src, name, "exec", dont_inherit=True), ns)
    except SystemExit:
        raise
    except BaseException as exc:
        if isinstance(exc, MemoryError):
            ns.clear()
        failed(exc, name, src, boot)


def failed(exc, name, src, boot):
    # The code raised: report a limit it hit, print its traceback, exit 1.
    import sys

    _pysandbox_report_limit(exc)
    _pysandbox_traceback(exc, name, src, boot)
    sys.exit(1)


def _pysandbox_guard(ns, text):
    # Shapes what the code sees, as the old pysandbox did: an import whitelist and limited
    # builtins. The configuration is the host's own (a literal built by the supervisor).
    import builtins
    import sys

    cfg = eval(text, {"__builtins__": {}, "null": None, "true": True, "false": False})
    if cfg["site_packages"]:
        import site

        for path in cfg["site_packages"]:
            site.addsitedir(path)
    if cfg["restrict"]:
        allowed, hidden, hints = cfg["modules"], cfg["hidden"], cfg["hints"]
        real_import = builtins.__import__
        proxies = {}

        def rule(name):
            # The module's own entry, or the entry of a package that holds it.
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                key = ".".join(parts[:i])
                if key in allowed:
                    return key, allowed[key]
            return None, None

        def refused(name):
            feature = hints.get(name) or hints.get(name.split(".")[0])
            if feature:
                how = "enable the '%s' feature" % feature
            else:
                how = "allow it with allow_module('%s')" % name
            return ImportError("import of '%s' is not allowed: %s" % (name, how), name=name)

        class ReadOnlyModule(type(sys)):
            def __setattr__(self, name, value):
                raise AttributeError("module '%s' is read-only in the sandbox" % self.__name__)

            __delattr__ = __setattr__

        def proxy(module, symbols, hide):
            # A read-only view: a new module object holding only the allowed names.
            key = (module.__name__, tuple(symbols or ()), tuple(hide))
            if key not in proxies:
                view = ReadOnlyModule(module.__name__)
                names = symbols if symbols is not None else list(vars(module))
                for n in names:
                    if n not in hide and n != "__loader__" and n != "__spec__" and hasattr(module, n):
                        vars(view)[n] = getattr(module, n)
                proxies[key] = view
            return proxies[key]

        def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
            if level:
                raise ImportError("relative imports are not allowed in sandboxed code")
            key, symbols = rule(name)
            if key is None:
                raise refused(name)
            module = real_import(name, globals, locals, fromlist, 0)
            if not fromlist and "." in name:
                return module
            hide = hidden.get(name, ())
            if symbols is None and not hide:
                return module
            return proxy(module, symbols, hide)

        def blocked(fname, message):
            def builtin(*args, **kwargs):
                raise PermissionError(message)

            builtin.__name__ = builtin.__qualname__ = fname
            return builtin

        b = dict(vars(builtins))
        b["__import__"] = guarded_import
        for fname, message in cfg["blocked"].items():
            b[fname] = blocked(fname, message)
        if cfg["exit"]:

            def exit(code=None):
                raise SystemExit(code)

            b["exit"] = b["quit"] = exit
        if "help" not in cfg["blocked"]:
            b["help"] = _pysandbox_help
        ns["__builtins__"] = b
    if cfg["recursion_limit"]:
        sys.setrecursionlimit(cfg["recursion_limit"])


def _pysandbox_repl(ns, token, boot):
    # `pysandbox repl`'s side in the jail: read an input line by line until it is a complete
    # statement, run it in the session's namespace, then tell the host with the token line.
    import codeop
    import io
    import sys

    commands = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdin = io.StringIO()
    compiler = codeop.CommandCompiler()
    show = _pysandbox_traceback
    lines = []
    count = 0

    def reply(state):
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout.write("\0" + token + " " + state + "\n")
        sys.stdout.flush()

    reply("ready")
    for line in commands:
        lines.append(line.rstrip("\n"))
        src = "\n".join(lines) + "\n"
        name = "<input-%d>" % (count + 1)
        try:
            code = compiler(src, name, "single")
        except (SyntaxError, OverflowError, ValueError) as exc:
            lines = []
            count += 1
            show(exc, name, src.encode(), boot)
            reply("done")
            continue
        if code is None:
            reply("more")
            continue
        lines = []
        count += 1
        try:
            exec(code, ns)
        except SystemExit:
            reply("exit")
            return
        except BaseException as exc:
            _pysandbox_report_limit(exc)
            show(exc, name, src.encode(), boot)
        reply("done")


def _pysandbox_help(*args, **kwargs):
    import pydoc

    return pydoc.help(*args, **kwargs)


def _pysandbox_report_limit(exc):
    import errno
    import os

    limit = None
    if isinstance(exc, MemoryError):
        limit = "memory"
    elif isinstance(exc, OSError):
        limit = {
            errno.EAGAIN: "processes",
            errno.ENOSPC: "tmp_size",
            errno.EFBIG: "file_size",
            errno.EMFILE: "open_files",
        }.get(exc.errno)
    elif isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        limit = "processes"
    if limit:
        try:
            os.write(4, ("limit " + limit + "\n").encode())
        except OSError:
            pass


def _pysandbox_traceback(exc, name, src, boot):
    # The user's own lines, with the bootstrap's frame left out: register the source with
    # linecache (the file itself is not inside the jail) and print with the traceback module.
    import sys

    try:
        import linecache
        import traceback

        text = src.decode("utf-8", "replace")
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
        # Frames of this bootstrap (the guard's hooks included) are not the user's: unlink them
        # from every traceback of the chain.
        mine = (globals(), boot)
        seen = set()
        e = exc
        while e is not None and id(e) not in seen:
            seen.add(id(e))
            tb = e.__traceback__
            while tb is not None and any(tb.tb_frame.f_globals is g for g in mine):
                tb = tb.tb_next
            cur = tb
            while cur is not None:
                nxt = cur.tb_next
                while nxt is not None and any(nxt.tb_frame.f_globals is g for g in mine):
                    nxt = nxt.tb_next
                cur.tb_next = nxt
                cur = nxt
            e.__traceback__ = tb
            e = e.__cause__ or e.__context__
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    except BaseException:
        print(type(exc).__name__ + ": " + str(exc), file=sys.stderr)



# The rest of pysandbox's bootstrap (see run.py), compiled only when needed: with the guard, in a
# `pysandbox repl` session, or to print a traceback. It arrives on descriptor 5 and runs in a
# namespace of its own. Not a security layer: the jail around the interpreter is.


_RECURSION = [None]


class _pysandbox_limited:
    # The code's recursion limit while it runs; the interpreter's own outside.
    def __enter__(self):
        import sys

        self.saved = sys.getrecursionlimit()
        if _RECURSION[0]:
            sys.setrecursionlimit(_RECURSION[0])

    def __exit__(self, *exc):
        import sys

        sys.setrecursionlimit(self.saved)


def run(mode, main, src, name, boot):
    # Modes other than the fast path: the guard (configuration on descriptor 6), the repl.
    import builtins
    import sys

    ns = main.__dict__
    if "guard" in mode and "warm" not in mode:
        with open(6, "rb") as f:
            _pysandbox_guard(ns, f.read().decode())
    else:
        builtins.exit = builtins.quit = sys.exit
        builtins.help = _pysandbox_help
    if "repl" in mode:
        return _pysandbox_repl(ns, boot)
    if "api" in mode:
        return _pysandbox_api(ns, src, name, boot)
    if "warm" in mode:
        return _pysandbox_warm(ns, boot)
    try:
        code = compile(src, name, "exec", dont_inherit=True)
        with _pysandbox_limited():
            exec(code, ns)
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


def _pysandbox_json(text):
    # Data from the host, parsed as JSON (never evaluated) with the C scanner alone: the json
    # package imports re, some 5 ms of every cold run.
    import _json

    class Context:
        strict = True
        object_hook = object_pairs_hook = None
        parse_float, parse_int = float, int

        def parse_constant(name):
            raise ValueError("not JSON: " + name)

    value, end = _json.make_scanner(Context)(text, 0)
    if text[end:].strip():
        raise ValueError("trailing data after JSON")
    return value


# Frames are written after the code has run, and the code may have replaced any builtin: what
# they need is taken here, when the bootstrap loads, or reached through methods of bytes and int.
_VIEW = memoryview


def _pysandbox_frame(tag, payload):
    # One report frame (docs/protocol.md): a little-endian u32 length of what follows, the tag
    # byte, the fields.
    return (payload.__len__() + 1).to_bytes(4, "little") + tag.to_bytes(1, "little") + payload


def _pysandbox_field(data):
    return data.__len__().to_bytes(4, "little") + data


def _pysandbox_write(data):
    # All of `data` to the report pipe (descriptor 4).
    import os

    view = _VIEW(data)
    while view:
        view = view[os.write(4, view):]


def _pysandbox_guard(ns, text):
    # Shapes what the code sees, as the old pysandbox did: an import whitelist and limited
    # builtins. The configuration is the host's own (JSON, parsed as data).
    import builtins
    import sys

    cfg = _pysandbox_json(text)
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
    # Set right before the code runs (see _pysandbox_limited): the bootstrap's own imports need
    # more frames than a small limit leaves.
    _RECURSION[0] = cfg["recursion_limit"]


def _pysandbox_repl(ns, boot):
    # `pysandbox repl`'s side in the jail: read an input line by line until it is a complete
    # statement, run it in the session's namespace, then tell the host on the report pipe (a
    # Repl frame: docs/protocol.md) where the session is: 0 ready, 1 more, 2 done, 3 exit.
    import codeop
    import io
    import os
    import sys

    commands = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdin = io.StringIO()
    compiler = codeop.CommandCompiler()
    show = _pysandbox_traceback
    lines = []
    count = 0
    write, states = os.write, {"ready": 0, "more": 1, "done": 2, "exit": 3}

    def reply(state):
        sys.stdout.flush()
        sys.stderr.flush()
        write(4, _pysandbox_frame(5, states[state].to_bytes(1, "little")))

    reply("ready")
    for line in commands:
        lines.append(line.rstrip("\n"))
        # As code.InteractiveConsole does: no newline after the last line, or a block would
        # end after its first line.
        src = "\n".join(lines)
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
            with _pysandbox_limited():
                exec(code, ns)
        except SystemExit:
            reply("exit")
            return
        except BaseException as exc:
            _pysandbox_report_limit(exc)
            show(exc, name, src.encode(), boot)
        reply("done")


def _pysandbox_api(ns, src, name, boot, request=None):
    # The package's side (`pysandbox serve`): descriptor 7 holds the request's data (or the warm
    # child passes it), the result goes to the report pipe as a Result frame of tagged JSON
    # (data only; see DATA below).
    import json
    import os
    import sys

    if request is None:
        with open(7, "rb") as f:
            request = json.loads(f.read() or b"{}")
    op = request.get("op", "exec")
    data = _pysandbox_decode(request.get("input") or {"d": []})
    result = {}
    try:
        globals_in = data.get("globals") or {}
        ns.update({k: v for k, v in globals_in.items() if not k.startswith("__")})
        local_ns = data.get("locals")
        if local_ns is None:
            local_ns = ns
        if op == "exec":
            code = compile(src, name, "exec", dont_inherit=True)
            with _pysandbox_limited():
                exec(code, ns, local_ns)
        elif op == "eval":
            code = compile(src, name, "eval", dont_inherit=True)
            with _pysandbox_limited():
                result["value"] = eval(code, ns, local_ns)
        elif op == "call":
            code = compile(src, name, "exec", dont_inherit=True)
            with _pysandbox_limited():
                exec(code, ns)
                func = ns[data["function"]]
                result["value"] = func(*data.get("args", ()), **data.get("kwargs", {}))
        elif op == "compile":
            # Compile only, nothing of the code runs: `pysandbox judge` checks a program once
            # (each of its cases compiles it again in its own fresh child).
            compile(src, name, "exec", dont_inherit=True)
        else:
            raise ValueError("unknown operation %r" % (op,))
        result["globals"] = _pysandbox_data_only(ns)
        if local_ns is not ns:
            result["locals"] = _pysandbox_data_only(local_ns)
    except SystemExit as exc:
        result = {"exit": exc.code if isinstance(exc.code, int) else 1}
    except BaseException as exc:
        if isinstance(exc, MemoryError):
            ns.clear()
        _pysandbox_report_limit(exc)
        result = {"error": _pysandbox_describe(exc, name, src, boot)}
    try:
        text = json.dumps(_pysandbox_encode(result), ensure_ascii=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        text = json.dumps(
            _pysandbox_encode({"error": {"type": "TypeError", "message": str(exc), "traceback": ""}}),
            ensure_ascii=True,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    _pysandbox_write(_pysandbox_frame(2, _pysandbox_field(text.encode("ascii"))))


def _pysandbox_data_only(ns):
    # The data values among a namespace's names (modules, functions, classes are left out).
    out = {}
    for k, v in ns.items():
        if isinstance(k, str) and not k.startswith("__") and _pysandbox_is_data(v, 0):
            out[k] = v
    return out


def _pysandbox_is_data(v, depth):
    if depth > 100:
        return False
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        return True
    if isinstance(v, (list, tuple, set, frozenset)):
        return all(_pysandbox_is_data(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(
            _pysandbox_is_data(k, depth + 1) and _pysandbox_is_data(x, depth + 1)
            for k, x in v.items()
        )
    return False


# DATA: None, bool and str as JSON; int {"i": hex}; float {"f": repr}; bytes {"b": hex};
# str with lone surrogates {"su": hex of UTF-8 with surrogatepass}; tuple {"t": [...]};
# list [...]; set {"s": [...]}; frozenset {"fs": [...]}; dict {"d": [[key, value], ...]}.
def _pysandbox_encode(v, path="value", depth=0):
    if depth > 100:
        # The host's decoder takes 100 levels (crates/py/src/lib.rs, MAX_DEPTH).
        raise ValueError("%s: nested more than 100 levels deep" % path)
    if v is None or v is True or v is False:
        return v
    if isinstance(v, str):
        try:
            v.encode("utf-8")
            return str(v)
        except UnicodeEncodeError:
            return {"su": v.encode("utf-8", "surrogatepass").hex()}
    if isinstance(v, int):
        return {"i": format(int(v), "x")}
    if isinstance(v, float):
        return {"f": repr(float(v))}
    if isinstance(v, (bytes, bytearray)):
        return {"b": bytes(v).hex()}
    enc = _pysandbox_encode
    if isinstance(v, list):
        return [enc(x, "%s[%d]" % (path, i), depth + 1) for i, x in enumerate(v)]
    if isinstance(v, tuple):
        return {"t": [enc(x, "%s[%d]" % (path, i), depth + 1) for i, x in enumerate(v)]}
    if isinstance(v, frozenset):
        return {"fs": [enc(x, path + ".item", depth + 1) for x in v]}
    if isinstance(v, set):
        return {"s": [enc(x, path + ".item", depth + 1) for x in v]}
    if isinstance(v, dict):
        return {
            "d": [
                [enc(k, path + ".key", depth + 1), enc(x, "%s[%r]" % (path, k), depth + 1)]
                for k, x in v.items()
            ]
        }
    raise TypeError("%s: cannot pass a %s out of the sandbox" % (path, type(v).__name__))


def _pysandbox_decode(v, depth=0):
    if depth > 200:
        raise ValueError("nested too deeply")
    if v is None or isinstance(v, (bool, str)):
        return v
    dec = _pysandbox_decode
    if isinstance(v, list):
        return [dec(x, depth + 1) for x in v]
    if isinstance(v, dict) and len(v) == 1:
        (tag, x), = v.items()
        if tag == "i":
            return int(x, 16)
        if tag == "f":
            return float(x)
        if tag == "b":
            return bytes.fromhex(x)
        if tag == "su":
            return bytes.fromhex(x).decode("utf-8", "surrogatepass")
        if tag == "t":
            return tuple(dec(y, depth + 1) for y in x)
        if tag == "s":
            return {dec(y, depth + 1) for y in x}
        if tag == "fs":
            return frozenset(dec(y, depth + 1) for y in x)
        if tag == "d":
            return {dec(k, depth + 1): dec(y, depth + 1) for k, y in x}
    raise ValueError("not data: %r" % (v,))


def _pysandbox_describe(exc, name, src, boot):
    # The exception as data: its type, message and traceback with the code's own lines.
    import io
    import sys

    buf = io.StringIO()
    err, sys.stderr = sys.stderr, buf
    try:
        _pysandbox_traceback(exc, name, src, boot)
    finally:
        sys.stderr = err
    try:
        message = str(exc)
    except BaseException:
        message = "<unprintable %s>" % type(exc).__name__
    return {"type": type(exc).__name__, "message": message, "traceback": buf.getvalue()}


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
            os.write(4, _pysandbox_frame(1, _pysandbox_field(limit.encode())))
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



# The rest of pysandbox's bootstrap (see run.py), compiled only when needed: with the guard, in a
# `pysandbox repl` session, or to print a traceback. It arrives on descriptor 5 and runs in a
# namespace of its own. Not a security layer: the jail around the interpreter is.


_RECURSION = [None]


def run(mode, main, src, name, boot):
    # Modes other than the fast path: the guard (configuration on descriptor 6), the repl, the
    # package's API, a warm zygote, and "extras" (descriptor 8: a Request frame with files to
    # place before the code, globs of files to send back after it, cell mode).
    import builtins
    import sys

    ns = main.__dict__
    extras = None
    if "extras" in mode or "repl" in mode or "warm" in mode or "api" in mode:
        _pysandbox_more()
    if "extras" in mode:
        with open(8, "rb") as f:
            extras = _pysandbox_request(f.read()[4:])
        _pysandbox_files_in(extras["files"])
    if "guard" in mode and "warm" not in mode:
        with open(6, "rb") as f:
            data = f.read()
        if data[:8] == b"\0PYSBMD\0":
            # Marshalled by the host (crate::pymarshal): data only, read without an import.
            import marshal

            cfg = marshal.loads(data[8:])
        else:
            cfg = data.decode()
        try:
            _pysandbox_guard(ns, cfg)
        except BaseException as exc:
            _pysandbox_more()
            if not isinstance(exc, _PreloadFailed):
                raise
            # Nothing of the code ran: say why, as a limit when it was one.
            _pysandbox_report_limit(exc.__cause__)
            print("pysandbox: " + str(exc), file=sys.stderr)
            sys.exit(125)
    else:
        builtins.exit = builtins.quit = sys.exit
        builtins.help = _pysandbox_help
    if "repl" in mode:
        return _pysandbox_repl(ns, boot)
    if "warm" in mode:
        return _pysandbox_warm(ns, boot)
    try:
        if "api" in mode:
            return _pysandbox_api(ns, src, name, boot, cell=bool(extras and extras["cell"]))
        try:
            if extras is not None and extras["cell"]:
                _pysandbox_cell(src, name, ns)
            elif _pysandbox_from_source(name):
                exec(src, ns)
            else:
                code = compile(src, name, "exec", dont_inherit=True)
                _pysandbox_more()
                with _pysandbox_limited():
                    exec(code, ns)
        except SystemExit:
            raise
        except BaseException as exc:
            if isinstance(exc, MemoryError):
                # Reported before anything else can fail for lack of memory (the rest of this
                # file is not loaded yet; a Limit frame as run.py writes it), then the code's
                # globals freed so that the traceback can be printed.
                import posix

                posix.write(4, b"\x0b\0\0\0\x01\x06\0\0\0memory")
                ns.clear()
            failed(exc, name, src, boot)
    finally:
        if extras is not None and extras["collect"]:
            _pysandbox_collect(extras["collect"])


def _pysandbox_from_source(name):
    # Whether the code may run as exec(source) instead of exec(compile(source, name)): the same
    # without compile(), whose first call makes the `_ast` module's classes (~1 ms of a cold
    # start; run.py's fast path does the same). Not for a named file (its name belongs in
    # tracebacks), nor under a recursion limit (the code is compiled before the limit applies:
    # the compiler counts against it).
    return name == "<string>" and not _RECURSION[0]


def failed(exc, name, src, boot):
    # The code raised: report a limit it hit, print its traceback, tell the host, exit 1.
    import sys

    _pysandbox_more()
    _pysandbox_report_limit(exc)
    _pysandbox_raised(exc, name, src, boot)
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


def _pysandbox_guard(ns, cfg):
    # Shapes what the code sees, as the old pysandbox did: an import whitelist and limited
    # builtins. The configuration is the host's own (JSON, parsed as data, or already data).
    import builtins
    import sys

    if not isinstance(cfg, dict):
        cfg = _pysandbox_json(cfg)
    if cfg["site_packages"]:
        import site

        for path in cfg["site_packages"]:
            site.addsitedir(path)
    _pysandbox_preload(cfg.get("preload") or (), bool(cfg["site_packages"]))
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

        def read_only_module():
            # Made on first use: a class costs a cold start (see below the split).
            if None not in proxies:

                class ReadOnlyModule(type(sys)):
                    def __setattr__(self, name, value):
                        raise AttributeError(
                            "module '%s' is read-only in the sandbox" % self.__name__
                        )

                    __delattr__ = __setattr__

                proxies[None] = ReadOnlyModule
            return proxies[None]

        def proxy(module, symbols, hide):
            # A read-only view: a new module object holding only the allowed names.
            key = (module.__name__, tuple(symbols or ()), tuple(hide))
            if key not in proxies:
                view = read_only_module()(module.__name__)
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
    if cfg.get("warmup"):
        _pysandbox_warmup(cfg["warmup"], ns.get("__builtins__", builtins))


def _pysandbox_warmup(code, builtins_):
    # The policy's `warmup`, after the preloads: code that takes the first-use costs (lazy
    # imports, caches, fonts) once, by a warm zygote for all its requests (before the code in a
    # cold run: the same state on every path). It runs with the code's builtins in a namespace
    # of its own, dropped after; figures it left open are closed.
    import sys

    scratch = {"__name__": "__pysandbox_warmup__", "__builtins__": builtins_}
    try:
        exec(compile(code, "<warmup>", "exec", dont_inherit=True), scratch)
    except BaseException as exc:
        _pysandbox_more()
        raise _PreloadFailed("warmup: the code raised %s" % _pysandbox_why(exc)) from exc
    finally:
        scratch.clear()
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            try:
                plt.close("all")
            except Exception:
                pass


def _pysandbox_preload(names, site):
    # The policy's `preload`, imported with the real import before the code: by a warm zygote
    # once for all its requests, before the code in a cold run (the same state on every path).
    # Without preloads nothing is imported (importlib and warnings: 0.3 ms of a cold start).
    if not names:
        return
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            if isinstance(exc, ImportError) and not site:
                hint = " (site-packages are importable with the 'full' preset only)"
            else:
                hint = ""
            _pysandbox_more()
            raise _PreloadFailed(
                "preload: importing '%s' failed: %s%s" % (name, _pysandbox_why(exc), hint)
            ) from exc


def _pysandbox_why(exc):
    # An exception in one line: its type and the last line of its message.
    try:
        return "%s: %s" % (type(exc).__name__, str(exc).strip().splitlines()[-1])
    except BaseException:
        return type(exc).__name__


def _pysandbox_help(*args, **kwargs):
    import pydoc

    return pydoc.help(*args, **kwargs)


def _pysandbox_more():
    # The rest of this file (below the line that says so) arrives compiled apart and is
    # unmarshalled only when a run needs it: the package's API, cells, files, the REPL, a warm
    # zygote, a traceback. A run with the guard whose code ends well never loads it (0.3 ms and
    # 110 page faults less per cold start). From the source, everything is already here.
    at = globals().pop("_PYSANDBOX_REST", None)
    if at is not None:
        # Its offset on descriptor 5 (bootstrap/run.py's load).
        import marshal
        import posix

        rest = posix.pread(5, posix.fstat(5).st_size - at, at)
        if rest:
            exec(marshal.loads(rest), globals())


# ---- pysandbox: the rest, loaded on demand (_pysandbox_more) ----


# Classes cost a cold start most (a class statement: ~0.25 M instructions in a fresh interpreter):
# none is made above.
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


class _PreloadFailed(Exception):
    # A module of the policy's `preload` did not import (the cause is the import's exception).
    pass


def _pysandbox_raised(exc, name, src, boot):
    # The code's uncaught exception: its traceback on stderr, as Python prints it, and an Error
    # frame (type, message, traceback) on the report pipe for the outcome's `error`.
    import sys

    info = _pysandbox_describe(exc, name, src, boot)
    try:
        sys.stderr.write(info["traceback"])
        sys.stderr.flush()
    except BaseException:
        pass
    _pysandbox_report_error(info)


def _pysandbox_report_error(info):
    # Each field cut to the host's bound (crates/core/src/protocol.rs: ERROR_*_MAX), whole
    # characters only.
    def cut(text, size):
        return text.encode("utf-8", "replace")[:size].decode("utf-8", "ignore").encode()

    payload = (_pysandbox_field(cut(info["type"], 256)) + _pysandbox_field(cut(info["message"], 8192))
               + _pysandbox_field(cut(info["traceback"], 49152)))  # fmt: skip
    try:
        _pysandbox_write(_pysandbox_frame(6, payload))
    except OSError:
        pass


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


def _pysandbox_request(body):
    # A Request frame's body (after its length; docs/protocol.md) as a dict: code, name, stdin,
    # api, files [(name, bytes)], collect [glob], cell, live, args.
    at = [1]

    def take(n):
        start = at[0]
        at[0] += n
        return body[start : start + n]

    def field():
        return take(int.from_bytes(take(4), "little"))

    def optional():
        return field() if take(1) == b"\x01" else None

    if body[:1] != b"\x01":
        raise ValueError("not a request frame")
    r = {"code": field(), "name": field(), "stdin": optional(), "api": optional()}
    r["files"] = [(field().decode(), field()) for _ in range(int.from_bytes(take(4), "little"))]
    r["collect"] = [field().decode() for _ in range(int.from_bytes(take(4), "little"))]
    flags = take(1)
    r["cell"], r["live"] = flags in (b"\x01", b"\x03"), flags in (b"\x02", b"\x03")
    count = int.from_bytes(take(4), "little") if at[0] < len(body) else 0
    r["args"] = [field().decode("utf-8", "replace") for _ in range(count)]
    return r


def _pysandbox_files_in(files):
    # The files given with the request, in the working directory (the host checked the names:
    # relative, no "..", no empty component). They count in the size of /tmp like any other.
    import os

    for name, data in files:
        parts = name.split("/")
        for i in range(1, len(parts)):
            try:
                os.mkdir("/".join(parts[:i]), 0o755)
            except FileExistsError:
                pass
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            view = _VIEW(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def _pysandbox_collect(globs, max_files=100, max_bytes=32 << 20, max_entries=10000):
    # After the run: every regular file below the working directory whose relative path matches
    # one of `globs` (fnmatch: "*" also crosses "/"), as File frames, within the host's bounds
    # (crates/core/src/limits.rs), a FilesTruncated frame if some were left out. Symbolic links
    # are neither followed nor sent. What this sends is the code's own data, like its stdout.
    import fnmatch
    import os
    import stat

    sent = total = seen = 0
    truncated = False
    todo = [""]
    while todo:
        top = todo.pop()
        try:
            entries = list(os.scandir(top or "."))
        except OSError:
            continue
        for e in sorted(entries, key=lambda e: e.name):
            seen += 1
            if seen > max_entries:
                truncated = True
                todo = []
                break
            rel = top + "/" + e.name if top else e.name
            try:
                if e.is_dir(follow_symlinks=False):
                    todo.append(rel)
                    continue
            except OSError:
                continue
            if not any(fnmatch.fnmatchcase(rel, g) for g in globs):
                continue
            try:
                name = rel.encode("utf-8")
                fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except (UnicodeEncodeError, OSError):
                # A symbolic link (ELOOP), a name that is not text: not a file to send.
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if sent >= max_files or total + st.st_size > max_bytes:
                    truncated = True
                    continue
                chunks, size = [], 0
                while size <= st.st_size:
                    chunk = os.read(fd, min(1 << 20, st.st_size + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                data = b"".join(chunks)
            finally:
                os.close(fd)
            if total + len(data) > max_bytes:
                truncated = True
                continue
            _pysandbox_write(_pysandbox_frame(7, _pysandbox_field(name) + _pysandbox_field(data)))
            sent += 1
            total += len(data)
    if truncated:
        _pysandbox_write(_pysandbox_frame(8, b""))


def _pysandbox_cell(src, name, ns, local_ns=None):
    # Notebook semantics: the statements run; the value of a last expression is the main result;
    # display() adds more; matplotlib figures (Agg) shown by plt.show() or still open at the end
    # become image/png results and are closed. Results are Display frames on the report pipe.
    import ast

    if local_ns is None:
        local_ns = ns
    _pysandbox_cell_setup(ns)
    tree = ast.parse(src, name)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    value = None
    try:
        with _pysandbox_limited():
            exec(compile(tree, name, "exec", dont_inherit=True), ns, local_ns)
            if last is not None:
                value = eval(compile(last, name, "eval", dont_inherit=True), ns, local_ns)
    finally:
        # A figure that is also the main result is shown once, as the main result.
        _pysandbox_show_figures(value)
    if value is not None:
        _pysandbox_display(value, True)


def _pysandbox_cell_setup(ns):
    # display() for the code, matplotlib on Agg with its cache in /tmp, and pyplot.show()
    # showing the figures (a backend of pysandbox's, loaded only if matplotlib asks for it).
    import builtins
    import os
    import sys

    builtins.display = _pysandbox_display_builtin
    guarded = ns.get("__builtins__")
    if isinstance(guarded, dict):
        guarded["display"] = _pysandbox_display_builtin
    # The full preset's environment names the same directory (packages.rs).
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/matplotlib")
    if _CELL_BACKEND not in sys.meta_path:
        sys.meta_path.insert(0, _CELL_BACKEND)
    # IPython's display() prints when no IPython shell runs: it becomes this one, whether
    # IPython is imported already (preloaded) or later.
    shown = sys.modules.get(_IPYTHON_DISPLAY)
    if shown is not None and shown.display is not _pysandbox_display_builtin:
        # Loaded before the cell: its display() was copied where IPython re-exports it too.
        original = shown.display
        for name in (_IPYTHON_DISPLAY, "IPython.display", "IPython.core.display", "IPython"):
            module = sys.modules.get(name)
            if module is not None and getattr(module, "display", None) is original:
                module.display = _pysandbox_display_builtin
    os.environ["MPLBACKEND"] = "module://_pysandbox_mpl"
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        # Imported before (preloaded): switch it to the capturing backend.
        try:
            plt.switch_backend("module://_pysandbox_mpl")
        except Exception:
            pass


def _pysandbox_display_builtin(*objs, raw=False, **kwargs):
    # display() in cell mode, with IPython's signature: each object one result; with raw=True
    # each object is a MIME bundle already (a dict of MIME type to data).
    for obj in objs:
        if raw and isinstance(obj, dict):
            _pysandbox_display(_pysandbox_raw_bundle(obj), False, raw=True)
        else:
            _pysandbox_display(obj, False)


_IPYTHON_DISPLAY = "IPython.core.display_functions"


class _CellBackend:
    # A meta path finder for two modules: `_pysandbox_mpl`, matplotlib's Agg canvas with a
    # show() that turns the open figures into results; and IPython's display functions, found
    # by the other finders and loaded as usual, then given this display() (IPython.display and
    # IPython's own callers read it from there).
    SOURCE = (
        "from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas\n"
        "from matplotlib.backend_bases import FigureManagerBase as FigureManager\n"
        "def show(*args, **kwargs):\n"
        "    _pysandbox_show_figures()\n"
    )

    def find_spec(self, name, path=None, target=None):
        # Every import asks: others are answered before importing anything (importlib.util
        # itself is imported through here).
        if name != "_pysandbox_mpl" and name != _IPYTHON_DISPLAY:
            return None
        import importlib.util
        import sys

        if name == "_pysandbox_mpl":
            return importlib.util.spec_from_loader(name, self)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__dict__["_pysandbox_show_figures"] = _pysandbox_show_figures
        exec(compile(self.SOURCE, "<pysandbox mpl>", "exec"), module.__dict__)

    @staticmethod
    def patch_ipython(module):
        module.display = _pysandbox_display_builtin


class _PatchingLoader:
    # The real loader of IPython's display functions, then this display() in the module.
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _CellBackend.patch_ipython(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)


_CELL_BACKEND = _CellBackend()


def _pysandbox_show_figures(skip=None):
    # Every open matplotlib figure as an image/png result (but `skip`), then closed.
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        if fig is not skip:
            _pysandbox_display(fig, False)
    plt.close("all")


def _pysandbox_raw_bundle(obj):
    # A bundle given as such (IPython's raw=True): MIME type -> str, other values as JSON.
    import base64
    import json

    data = {}
    for mime, value in obj.items():
        if isinstance(value, (bytes, bytearray)):
            value = base64.b64encode(bytes(value)).decode("ascii")
        elif not isinstance(value, str):
            value = json.dumps(value)
        data[str(mime)] = value
    return data


def _pysandbox_display(obj, main, raw=False):
    # One rich result: the object's MIME bundle (`obj` itself when raw), as a Display frame.
    import json

    try:
        data = obj if raw else _pysandbox_bundle(obj)
    except Exception:
        data = {"text/plain": "<unrepresentable %s>" % type(obj).__name__}
    text = json.dumps({"data": data, "is_main_result": bool(main)}, ensure_ascii=False)
    _pysandbox_write(_pysandbox_frame(9, _pysandbox_field(text.encode("utf-8", "replace"))))


_MIME_METHODS = (
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_json_", "application/json"),
    ("_repr_latex_", "text/latex"),
)


def _pysandbox_bundle(obj):
    # MIME type -> str, as Jupyter's: binary types base64, JSON as text, text/plain the repr.
    import base64
    import json

    data = {}

    def put(mime, value):
        if mime in data or value is None:
            return
        if isinstance(value, tuple):
            value = value[0]
        if isinstance(value, (bytes, bytearray)):
            value = base64.b64encode(bytes(value)).decode("ascii")
        elif not isinstance(value, str):
            value = json.dumps(value)
        data[mime] = value

    if type(obj).__module__.startswith("matplotlib.figure") and hasattr(obj, "savefig"):
        import io

        buf = io.BytesIO()
        obj.savefig(buf, format="png")
        put("image/png", buf.getvalue())
    bundle = getattr(type(obj), "_repr_mimebundle_", None)
    if callable(bundle):
        try:
            got = obj._repr_mimebundle_()
            if isinstance(got, tuple):
                got = got[0]
            for mime, value in dict(got or {}).items():
                put(str(mime), value)
        except Exception:
            pass
    for method, mime in _MIME_METHODS:
        if mime in data or not callable(getattr(type(obj), method, None)):
            continue
        try:
            put(mime, getattr(obj, method)())
        except Exception:
            pass
    if "text/plain" not in data:
        data["text/plain"] = repr(obj)
    return data


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


def _pysandbox_api(ns, src, name, boot, request=None, cell=False):
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
        plain = _pysandbox_from_source(name)
        if op == "exec" and cell:
            _pysandbox_cell(src, name, ns, local_ns)
        elif op == "exec" and plain:
            exec(src, ns, local_ns)
        elif op == "exec":
            code = compile(src, name, "exec", dont_inherit=True)
            with _pysandbox_limited():
                exec(code, ns, local_ns)
        elif op == "eval" and plain:
            result["value"] = eval(src, ns, local_ns)
        elif op == "eval":
            code = compile(src, name, "eval", dont_inherit=True)
            with _pysandbox_limited():
                result["value"] = eval(code, ns, local_ns)
        elif op == "call":
            code = src if plain else compile(src, name, "exec", dont_inherit=True)
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
        # The status (and message) the interpreter takes from the code, as on every other path.
        result = {"exit": boot["_pysandbox_status"](exc.code, sys)}
    except BaseException as exc:
        if isinstance(exc, MemoryError):
            ns.clear()
        _pysandbox_report_limit(exc)
        result = {"error": _pysandbox_describe(exc, name, src, boot)}
        _pysandbox_report_error(result["error"])
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


# What the dynamic loader says when the address space is full (glibc's dl-load.c, dl-map-segments.h):
# an extension module that cannot be mapped is an ImportError, not a MemoryError.
_NO_ROOM = ("failed to map segment", "cannot map zero-fill pages", "annot allocate memory")


def _pysandbox_out_of_room(exc):
    # An ImportError (or one it was raised from, as numpy wraps its own) from a mapping that
    # did not fit.
    try:
        for _ in range(8):
            if exc is None:
                break
            if isinstance(exc, ImportError) and any(m in str(exc) for m in _NO_ROOM):
                return True
            exc = exc.__cause__ or exc.__context__
    except BaseException:
        pass
    return False


def _pysandbox_report_limit(exc):
    import errno
    import os

    limit = None
    if isinstance(exc, MemoryError) or _pysandbox_out_of_room(exc):
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



# pysandbox's bootstrap for `pysandbox run`, executed with `python -I -S -B -c` inside the jail.
# Descriptor 3 holds the code (a sealed memfd), descriptor 4 is the report pipe to the supervisor.
# argv after -c: the code's file name, then its arguments.
# This is not a security layer: the jail around the interpreter is.


def _pysandbox_run():
    import sys

    main = sys.modules["__main__"].__dict__
    report = main.pop("_pysandbox_report_limit")
    show = main.pop("_pysandbox_traceback")
    del main["_pysandbox_run"]
    with open(3, "rb") as f:
        src = f.read()
    name = sys.argv[1]
    sys.argv = sys.argv[1:]
    if name != "<string>":
        main["__file__"] = name
    try:
        exec(compile(src, name, "exec", dont_inherit=True), main)
    except SystemExit:
        raise
    except BaseException as exc:
        report(exc)
        show(exc, name, src)
        sys.exit(1)


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


def _pysandbox_traceback(exc, name, src):
    # The user's own lines, with the bootstrap's frame left out: register the source with
    # linecache (the file itself is not inside the jail) and print with the traceback module.
    import sys

    try:
        import linecache
        import traceback

        text = src.decode("utf-8", "replace")
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code.co_name == "_pysandbox_run":
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb)
    except BaseException:
        print(type(exc).__name__ + ": " + str(exc), file=sys.stderr)


_pysandbox_run()

"""The features' system-call paths: threads, a process pool, subprocess (when allowed), asyncio,
sockets (unix; inet when the network feature is on), select/poll/epoll, signals, timers, mmap,
sqlite3, tempfile, resource, locale; each step says whether it worked."""

import asyncio
import concurrent.futures
import mmap
import os
import resource
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time


def step(name, fn):
    try:
        print(name, "ok", fn())
    except Exception as e:  # noqa: BLE001 - each step's failure is its result
        print(name, "refused", type(e).__name__, e)


def threads():
    out = []
    ts = [threading.Thread(target=lambda i=i: out.append(i * i)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        return sorted(out), sum(ex.map(abs, range(-5, 5)))


def processes():
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        return sum(ex.map(abs, range(-5, 5)))


def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def run_subprocess():
    return subprocess.run([sys.executable, "-c", "print(6*7)"], capture_output=True).stdout


def unix_sockets():
    a, b = socket.socketpair()
    a.sendall(b"x" * 10)
    r = b.recv(10)
    path = tempfile.mktemp(suffix=".sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen()
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    conn, _ = srv.accept()
    c.sendmsg([b"hi"])
    return r, conn.recvmsg(10)[0]


def inet_sockets():
    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(b"ping")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"d", ("127.0.0.1", srv.getsockname()[1]))
    return conn.recv(4), socket.getaddrinfo("127.0.0.1", 80)[0][4][0]


async def amain():
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print(1)", stdout=asyncio.subprocess.PIPE
    ) if os.environ.get("TRACE_SUBPROCESS") else None
    await asyncio.sleep(0.01)
    r, w = os.pipe()
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.add_reader(r, lambda: fut.set_result(os.read(r, 3)))
    os.write(w, b"abc")
    got = await fut
    return got, (await p.communicate())[0] if p else None


def polling():
    r, w = os.pipe()
    os.write(w, b"1")
    p = select.poll()
    p.register(r, select.POLLIN)
    e = select.epoll()
    e.register(r, select.EPOLLIN)
    return select.select([r], [], [], 0)[0], p.poll(0), e.poll(0)


def signals():
    got = []
    signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
    os.kill(os.getpid(), signal.SIGUSR1)
    signal.setitimer(signal.ITIMER_REAL, 0.01)
    signal.signal(signal.SIGALRM, lambda *a: got.append(2))
    time.sleep(0.05)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
    return got, signal.sigpending(), signal.sigtimedwait([signal.SIGUSR2], 0)


def memory():
    with tempfile.TemporaryFile() as f:
        f.write(b"\0" * 65536)
        f.flush()
        m = mmap.mmap(f.fileno(), 65536)
        m[0:1] = b"x"
        m.flush()
        m.resize(131072)
        anon = mmap.mmap(-1, 1 << 20)
        anon.madvise(mmap.MADV_DONTNEED)
        return m[0:1], len(anon)


def files():
    d = tempfile.mkdtemp()
    p = os.path.join(d, "f")
    with open(p, "w") as f:
        f.write("x")
    os.rename(p, p + "2")
    os.symlink(p + "2", p + "3")
    os.chmod(p + "2", 0o600)
    db = sqlite3.connect(os.path.join(d, "db"))
    db.execute("create table t(x)")
    db.execute("insert into t values (1)")
    db.commit()
    return os.listdir(d), os.statvfs(d).f_bsize > 0, db.execute("select * from t").fetchall()


def limits():
    return resource.getrlimit(resource.RLIMIT_NOFILE), resource.getrusage(resource.RUSAGE_SELF)[0] >= 0


step("threads", threads)
step("fork", fork)
step("processes", processes)
if os.environ.get("TRACE_SUBPROCESS"):
    step("subprocess", run_subprocess)
step("unix_sockets", unix_sockets)
if os.environ.get("TRACE_NETWORK"):
    step("inet_sockets", inet_sockets)
step("asyncio", lambda: asyncio.run(amain()))
step("polling", polling)
step("signals", signals)
step("memory", memory)
step("files", files)
step("limits", limits)
step("time", lambda: (time.time() > 0, time.monotonic() > 0, time.process_time() >= 0, os.times()[0] >= 0))
step("ids", lambda: (os.getpid(), os.getppid(), os.getuid(), os.cpu_count(), os.uname()[0]))

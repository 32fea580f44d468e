//! The zygote's side of a warm worker, run inside its jail by the bootstrap (`bootstrap/warm.py`)
//! through the zygote library (`crates/zygote`): the Python process keeps its modules and the
//! request path warm, and this code makes every process, namespace and isolation call.
//!
//! [`serve`] answers the host on the control socket ([`ToZygote`] in, [`FromZygote`] out) and
//! forks the request children. Each child takes the isolation steps of [`isolate`] right after
//! the fork, still in this code, and then returns into the bootstrap, which runs the code. For
//! each child, before the fork: a Landlock ruleset with the jail's rules, the pipes (the host's
//! ends handed over with a pidfd of the child after the fork), and a new PID namespace (the child
//! is its PID 1: everything it leaves behind dies with it). After a request child has ended (the
//! host may also have killed it: it owns every clock), a fresh tmpfs on `/tmp` for the next.

use super::zygote::ZygoteConfig;
use crate::isolate::{self, ChildSetup, Rlimits, Stage, Step};
use crate::landlock::{self, Access};
use crate::protocol::{End, FromZygote, Report, ToZygote};
use crate::{seccomp, sys};
use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt::Display;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

/// What [`serve`] returns to the bootstrap.
pub const ROLE_EXIT: i32 = 0;
pub const ROLE_REQUEST: i32 = 1;
pub const ROLE_SESSION: i32 = 2;
pub const ROLE_FAILED: i32 = -1;
/// Added to a child's role by the zygote library when its request already waits on
/// [`REQUEST_FD`] (the bootstrap then skips the child's warm-up).
pub const ROLE_WAITING: i32 = 4;
/// A request or session child's request pipe, as the bootstrap reads it.
pub const REQUEST_FD: RawFd = 3;

/// Exit status of a child whose isolation failed (its report pipe says which step).
pub const SETUP_FAILED: i32 = 125;

/// How many ended children the zygote remembers for the host's `Status` questions.
const REMEMBERED: usize = 64;

/// How many ended requests' `/tmp`s the holder keeps (see [`Zygote::fresh_tmp`]) before they
/// are detached together. Each is an empty tmpfs: a few KiB.
const TMP_KEPT: usize = 32;

/// Serve the host on `ctl_fd` with the configuration on `config_fd` (both handed over: this
/// function owns them). Returns [`ROLE_REQUEST`] or [`ROLE_SESSION`] in a child that is
/// isolated and must now run the bootstrap's request loop, [`ROLE_EXIT`] in the zygote once the
/// host has gone (everything it forked is killed), [`ROLE_FAILED`] when it could not start (the
/// host was told).
pub fn serve(config_fd: RawFd, ctl_fd: RawFd) -> i32 {
    // Descriptors the interpreter's objects may hold (files a preload left open; the bootstrap
    // keeps 0 to 8 taken before the preloads, so they are above): looked at before this code
    // opens any of its own.
    let inherited = sys::open_fds_from(CHILD_FDS);
    let ctl = match sys::adopt_fd(ctl_fd) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("pysandbox zygote: control socket {ctl_fd}: {e}");
            return ROLE_FAILED;
        }
    };
    let fail = |policy: bool, message: String| {
        let msg = FromZygote::Failed { policy, message };
        let _ = sys::send(ctl.as_fd(), &msg.encode());
        ROLE_FAILED
    };
    let config = match sys::adopt_fd(config_fd).and_then(|fd| sys::read_whole(fd.as_fd())) {
        Ok(c) => c,
        Err(e) => return fail(false, format!("reading the zygote's configuration: {e}")),
    };
    let cfg: ZygoteConfig = match serde_json::from_slice(&config) {
        Ok(c) => c,
        Err(e) => return fail(false, format!("the zygote's configuration: {e}")),
    };
    if cfg.protocol != crate::protocol::VERSION {
        return fail(
            false,
            format!(
                "the zygote library speaks protocol {} and the binary {}: the binary and \
                 libpysandbox_zygote.so next to it come from different builds; rebuild both",
                crate::protocol::VERSION,
                cfg.protocol
            ),
        );
    }
    if let Err(message) = check_preloaded(&cfg) {
        return fail(true, message);
    }
    let mut z = match Zygote::prepare(cfg, ctl) {
        Ok(mut z) => {
            z.inherited = inherited;
            z
        }
        Err((ctl, e)) => {
            let msg = FromZygote::Failed {
                policy: false,
                message: format!("preparing the zygote: {e}"),
            };
            let _ = sys::send(ctl.as_fd(), &msg.encode());
            return ROLE_FAILED;
        }
    };
    // No fastbins from here on: malloc keeps small freed chunks in them unmerged until a larger
    // request merges them all (malloc_consolidate), writing chunk headers across the heap; a
    // child that did so copied those pages (~1–9 page faults per child, depending on what the
    // zygote freed last, measured). The interpreter's small objects do not use malloc.
    // SAFETY: mallopt changes a tunable of this process's allocator; one thread.
    unsafe { libc::mallopt(libc::M_MXFAST, 0) };
    // SAFETY: malloc_trim only returns free heap memory to the kernel; the zygote has one thread.
    unsafe { libc::malloc_trim(0) };
    // Its children end with _exit (bootstrap/warm.py): what native code prints through C's
    // stdout must not wait in a buffer. (fflush from each child instead: ~8 page faults more
    // per run, the call's pages copied or mapped in the child, measured.) C's stderr is
    // unbuffered already.
    sys::unbuffer_stdout();
    match z.run() {
        Ok(Some(role)) => {
            // In a child: every descriptor the zygote held was closed or moved by the isolation
            // steps, so none of them may be closed again by number.
            std::mem::forget(z);
            role
        }
        Ok(None) => ROLE_EXIT,
        Err(e) => {
            eprintln!("pysandbox zygote: {e}");
            ROLE_FAILED
        }
    }
}

/// How long the zygote waits for threads its preloads left finishing (a timer cancelled at the
/// end of an import) before it refuses to serve.
const THREADS_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Room a request must have under its memory limit beyond what the zygote maps when the policy
/// preloads modules: as much as the smallest limit accepted ([`crate::policy::MIN_MEMORY`],
/// what CPython needs to start), so that a request can do that much work of its own.
const PRELOAD_ROOM: u64 = crate::policy::MIN_MEMORY;

/// What the zygote checks once its modules are imported, before it forks anything: it has one
/// thread (`fork` copies only the calling thread; a lock another thread held stays locked in
/// every child, and OpenBLAS and others start threads at import: PITFALLS.md), and a policy's
/// preloads leave each request [`PRELOAD_ROOM`] under its address-space limit (a child starts
/// with everything the zygote maps). The message says what to change.
fn check_preloaded(cfg: &ZygoteConfig) -> Result<(), String> {
    let preloads = if cfg.policy_preload.is_empty() {
        String::new()
    } else {
        format!(" ({})", cfg.policy_preload.join(", "))
    };
    let settle = std::time::Instant::now() + THREADS_SETTLE;
    loop {
        match sys::single_threaded() {
            Ok(true) => break,
            Ok(false) if std::time::Instant::now() < settle => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(false) => {
                return Err(format!(
                    "the warm zygote has more than one thread after importing its modules\
                     {preloads}, and forking it would be unsafe: a preloaded module started \
                     threads at import; drop it from preload, or keep its library \
                     single-threaded through the policy's env (OPENBLAS_NUM_THREADS=1, \
                     OMP_NUM_THREADS=1, MKL_NUM_THREADS=1 are the `full` preset's defaults)"
                ))
            }
            Err(e) => return Err(format!("counting the zygote's threads: {e}")),
        }
    }
    let Some(limit) = cfg.limits.memory else {
        return Ok(());
    };
    if cfg.policy_preload.is_empty() {
        return Ok(());
    }
    let used = address_space_used().map_err(|e| format!("measuring the zygote: {e}"))?;
    if limit.saturating_sub(used) < PRELOAD_ROOM {
        let mib = |b: u64| b.div_ceil(1 << 20);
        return Err(format!(
            "the preloaded modules{preloads} and the interpreter take {} MiB of address space, \
             which leaves {} MiB of the memory limit of {} to each request (at least {} MiB \
             are needed); raise limits.memory (--memory, max_memory) to {}M or more, or \
             preload less",
            mib(used),
            mib(limit.saturating_sub(used)),
            crate::limits::format_size(limit),
            mib(PRELOAD_ROOM),
            mib(used + PRELOAD_ROOM).div_ceil(16) * 16
        ));
    }
    Ok(())
}

/// The address space this process maps, which a forked child starts with: a ceiling less the
/// largest mapping that still fits once `RLIMIT_AS` is lowered to that ceiling (no `/proc` in a
/// jail to read it from; ~20 probes). The zygote's own limit is put back afterwards; it has one
/// thread, so nothing else maps meanwhile.
fn address_space_used() -> std::io::Result<u64> {
    const STEP: u64 = 1 << 20;
    let (soft, hard) = sys::getrlimit(libc::RLIMIT_AS)?;
    let ceiling = hard.min(1 << 40);
    sys::setrlimit(libc::RLIMIT_AS, ceiling, hard)?;
    // Invariant: `fits` bytes can be mapped, `fails` cannot (or is the whole ceiling).
    let (mut fits, mut fails) = (0u64, ceiling);
    while fails - fits > STEP {
        let mid = ((fits + (fails - fits) / 2) & !(STEP - 1)).max(fits + STEP);
        if sys::can_map(mid as usize) {
            fits = mid;
        } else {
            fails = mid;
        }
    }
    sys::setrlimit(libc::RLIMIT_AS, soft, hard)?;
    Ok(ceiling - fits)
}

struct Child {
    seq: u64,
    pid: libc::pid_t,
    pidfd: OwnedFd,
    session: bool,
}

struct Zygote {
    cfg: ZygoteConfig,
    ctl: OwnedFd,
    /// What every child's isolation needs, made once.
    p: Prepared,
    children: Vec<Child>,
    ended: VecDeque<(u64, FromZygote)>,
    asked: Vec<u64>,
    seq: u64,
    /// The pool's request child, alive.
    request: Option<u64>,
    /// Descriptors the interpreter held when it started serving (above the child's own).
    inherited: Vec<RawFd>,
    /// How long reaping the last request child and mounting a fresh `/tmp` took (traced).
    last_reap: std::time::Duration,
}

/// The descriptors a child is given (0 to 8, see [`Zygote::isolate_child`]).
const CHILD_FDS: RawFd = 9;

/// An error of the zygote's own (not of a child's isolation).
struct ZygoteError(String);

impl Display for ZygoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn zerr(what: &str) -> impl Fn(std::io::Error) -> ZygoteError + '_ {
    move |e| ZygoteError(format!("{what}: {e}"))
}

impl Zygote {
    /// Everything the children's isolation needs that can be done once.
    fn prepare(cfg: ZygoteConfig, ctl: OwnedFd) -> Result<Zygote, (OwnedFd, ZygoteError)> {
        match Zygote::prepare_inner(&cfg) {
            Ok(p) => Ok(Zygote {
                cfg,
                ctl,
                p,
                children: Vec::new(),
                ended: VecDeque::new(),
                asked: Vec::new(),
                seq: 0,
                request: None,
                inherited: Vec::new(),
                last_reap: std::time::Duration::ZERO,
            }),
            Err(e) => Err((ctl, e)),
        }
    }

    fn prepare_inner(cfg: &ZygoteConfig) -> Result<Prepared, ZygoteError> {
        // The zygote keeps its effective capabilities (it makes namespaces and mounts) and
        // never executes a program; its children drop them, and these locks keep uid 0 from
        // getting any back.
        sys::lock_securebits_and_bounding_set().map_err(zerr("locking the securebits"))?;
        let null = sys::open(Path::new("/dev/null"), libc::O_RDWR).map_err(zerr("/dev/null"))?;
        let abi = landlock::abi().map_err(|e| ZygoteError(e.to_string()))?;
        let handled = landlock::fs_rights(abi);
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for r in &cfg.rules {
            let fd = sys::open_path(&r.path)
                .map_err(|e| ZygoteError(format!("Landlock rule {}: {e}", r.path.display())))?;
            let mut allowed = landlock::rights(r.access, handled);
            if !r.is_dir {
                allowed &= landlock::FILE_RIGHTS;
            }
            rules.push((fd, allowed));
        }
        let net = if cfg.network == crate::jail::Network::None && abi >= 4 {
            landlock::NET_BIND_TCP | landlock::NET_CONNECT_TCP
        } else {
            0
        };
        // Requests of one worker share its network namespace: scope abstract sockets always.
        let scoped = if abi >= 6 {
            landlock::SCOPE_SIGNAL | landlock::SCOPE_ABSTRACT_UNIX_SOCKET
        } else {
            0
        };
        let own_pid_ns = sys::pidfd_open(std::process::id() as libc::pid_t)
            .map_err(zerr("pidfd of the zygote"))?;
        std::env::set_current_dir("/").map_err(zerr("chdir /"))?;
        // The first request gets an empty /tmp too: what the zygote's imports wrote there
        // (matplotlib's font cache) is left behind, as every request's /tmp is after it.
        let tmp_options = isolate::tmp_options(cfg.limits.tmp_size);
        sys::umount_detach(Path::new("/tmp")).map_err(zerr("umount /tmp"))?;
        let tmp_holder = mount_tmp_holder()?;
        isolate::mount_tmp(Some(&tmp_options)).map_err(zerr("mount /tmp"))?;
        Ok(Prepared {
            null,
            own_pid_ns,
            rules,
            handled,
            net,
            scoped,
            tmp_rights: landlock::rights(Access::ReadWrite, handled),
            tmp_options,
            tmp_holder,
            tmp_kept: 0,
            filter: seccomp::request_program(),
        })
    }

    fn send(&self, msg: &FromZygote) -> Result<(), ZygoteError> {
        sys::send(self.ctl.as_fd(), &msg.encode())
            .map(|_| ())
            .map_err(zerr("writing to the host"))
    }

    /// The loop: `Ok(Some(role))` in a new child, `Ok(None)` when the host has gone.
    fn run(&mut self) -> Result<Option<i32>, ZygoteError> {
        self.send(&FromZygote::Ready)?;
        let mut buf = vec![0u8; 4096];
        loop {
            if self.cfg.prefork && self.request.is_none() {
                if let Some(role) = self.spawn(false, None)? {
                    return Ok(Some(role));
                }
            }
            let mut fds = Vec::with_capacity(1 + self.children.len());
            fds.push(libc::pollfd {
                fd: self.ctl.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            for c in &self.children {
                fds.push(libc::pollfd {
                    fd: c.pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            sys::poll(&mut fds, -1).map_err(zerr("poll"))?;
            let ended: Vec<RawFd> = fds[1..]
                .iter()
                .filter(|p| p.revents != 0)
                .map(|p| p.fd)
                .collect();
            for fd in ended {
                self.reap(fd)?;
            }
            if fds[0].revents == 0 {
                continue;
            }
            let got = sys::recv_with_fds(self.ctl.as_fd(), &mut buf).map_err(zerr("reading"))?;
            if got.len == 0 {
                // The host has gone: so does everything it asked for.
                for c in &self.children {
                    let _ = sys::pidfd_kill(c.pidfd.as_fd(), libc::SIGKILL);
                }
                return Ok(None);
            }
            match ToZygote::decode(&buf[..got.len]) {
                Ok(ToZygote::Session { cpu_seconds }) => {
                    if let Some(role) = self.spawn(true, Some(cpu_seconds))? {
                        return Ok(Some(role));
                    }
                }
                Ok(ToZygote::Status { seq }) => self.answer(seq)?,
                Err(e) => eprintln!("pysandbox zygote: a bad message from the host: {e}"),
            }
        }
    }

    /// A child has ended: reap it, remember how, and after a request give `/tmp` a fresh start.
    fn reap(&mut self, pidfd: RawFd) -> Result<(), ZygoteError> {
        let Some(i) = self
            .children
            .iter()
            .position(|c| c.pidfd.as_raw_fd() == pidfd)
        else {
            return Ok(());
        };
        let c = self.children.swap_remove(i);
        let from = std::time::Instant::now();
        let r = sys::wait4(c.pid, 0)
            .map_err(zerr("reaping a child"))?
            .ok_or_else(|| ZygoteError("a child vanished".into()))?;
        let end = if libc::WIFSIGNALED(r.status) {
            End::Signaled(libc::WTERMSIG(r.status))
        } else {
            End::Exited(libc::WEXITSTATUS(r.status))
        };
        let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        let exit = FromZygote::Exit {
            seq: c.seq,
            end,
            cpu_micros: micros(r.rusage.ru_utime) + micros(r.rusage.ru_stime),
            maxrss_kib: r.rusage.ru_maxrss as u64,
        };
        if self.ended.len() >= REMEMBERED {
            self.ended.pop_front();
        }
        self.ended.push_back((c.seq, exit));
        if !c.session && self.request == Some(c.seq) {
            self.request = None;
            self.fresh_tmp()?;
            self.last_reap = from.elapsed();
        }
        if let Some(at) = self.asked.iter().position(|s| *s == c.seq) {
            self.asked.swap_remove(at);
            self.answer(c.seq)?;
        }
        Ok(())
    }

    /// A new, empty `/tmp` for the next request; the last one's (nothing uses it any more: its
    /// whole PID namespace has ended) goes out of every path.
    ///
    /// Detaching a mount makes the kernel wait for an expedited RCU grace period (an IPI to
    /// every CPU, and ~150 µs asleep here, on the zygote's way to its next child). So the
    /// `/tmp` of a request is mounted over a holder (a tmpfs of the zygote's, never visible to
    /// a child: a request's `/tmp` covers it); when the request has ended, its `/tmp` is moved
    /// onto a directory of the holder (out of every path: the holder is covered again by the
    /// next `/tmp` before any child is made) and a fresh one mounted. The holder, with all it
    /// holds, is detached in one call when [`TMP_KEPT`] are there, or at once when the last
    /// `/tmp` holds anything (a file, a block: that is not kept in memory for later requests).
    fn fresh_tmp(&mut self) -> Result<(), ZygoteError> {
        let tmp = Path::new("/tmp");
        let used = sys::filesystem_in_use(tmp).map_err(zerr("statfs /tmp"))?;
        let name = CString::new(self.p.tmp_kept.to_string()).expect("digits");
        sys::move_mount_into(tmp, self.p.tmp_holder.as_fd(), &name)
            .map_err(zerr("moving the last /tmp aside"))?;
        self.p.tmp_kept += 1;
        if used || self.p.tmp_kept >= TMP_KEPT {
            // The holder is at the top now: detached with every /tmp it holds.
            sys::umount_detach(tmp).map_err(zerr("umount the /tmp holder"))?;
            self.p.tmp_holder = mount_tmp_holder()?;
            self.p.tmp_kept = 0;
        }
        isolate::mount_tmp(Some(&self.p.tmp_options)).map_err(zerr("mount /tmp"))
    }

    fn answer(&mut self, seq: u64) -> Result<(), ZygoteError> {
        match self.ended.iter().find(|(s, _)| *s == seq) {
            Some((_, msg)) => {
                let msg = msg.clone();
                self.send(&msg)
            }
            None => {
                self.asked.push(seq);
                Ok(())
            }
        }
    }

    /// Fork the next child. `Some(role)` in the child, isolated; `None` in the zygote.
    fn spawn(&mut self, session: bool, cpu: Option<u64>) -> Result<Option<i32>, ZygoteError> {
        self.seq += 1;
        let seq = self.seq;
        let prepared_from = self.cfg.trace.then(std::time::Instant::now);
        let ruleset =
            landlock::prepare_ruleset(self.p.handled, self.p.net, self.p.scoped, &self.p.rules)
                .map_err(zerr("Landlock ruleset"))?;
        let p = Pipes::new().map_err(zerr("pipes"))?;
        // A new PID namespace applies to the next child made; it can only be made from the
        // zygote's own namespace, to which setns returns first.
        sys::setns(self.p.own_pid_ns.as_fd(), libc::CLONE_NEWPID)
            .map_err(zerr("setns to the zygote's PID namespace"))?;
        sys::unshare(libc::CLONE_NEWPID).map_err(zerr("unshare(CLONE_NEWPID)"))?;
        let others = self.children.len() as u64;
        // Checked before every fork, not only at start: a thread started since (by nothing of
        // the zygote's own) would make the child inherit a copy of its locks in any state.
        if !sys::single_threaded().map_err(zerr("counting the zygote's threads"))? {
            return Err(ZygoteError(
                "refusing to fork: the zygote has more than one thread (forking it would copy \
                 only this one, and any lock another holds would stay locked in the child)"
                    .into(),
            ));
        }
        if let Some(from) = prepared_from {
            trace::begin(&[
                (
                    "zygote: the last request's end reaped, a fresh /tmp",
                    self.last_reap,
                ),
                (
                    "zygote: Landlock ruleset, pipes, PID namespace",
                    from.elapsed(),
                ),
            ]);
        }
        match sys::fork().map_err(zerr("fork"))? {
            None => {
                trace::mark("fork (until the child runs)");
                let role = self.isolate_child(seq, session, cpu, others, &p, ruleset);
                // The pipes were moved to the child's numbers or closed: never close by number.
                std::mem::forget(p);
                Ok(Some(role))
            }
            Some(pid) => {
                let pidfd = sys::pidfd_open(pid).map_err(zerr("pidfd_open"))?;
                let msg = FromZygote::Child { seq, session };
                let fds = [
                    p.req_w.as_fd(),
                    p.out_r.as_fd(),
                    p.err_r.as_fd(),
                    p.res_r.as_fd(),
                    pidfd.as_fd(),
                ];
                sys::send_with_fds(self.ctl.as_fd(), &msg.encode(), &fds)
                    .map_err(zerr("handing a child to the host"))?;
                drop(p);
                drop(ruleset);
                self.children.push(Child {
                    seq,
                    pid,
                    pidfd,
                    session,
                });
                if !session {
                    self.request = Some(seq);
                }
                Ok(None)
            }
        }
    }

    /// In the child, right after the fork: the isolation steps, then back to the bootstrap.
    /// A step that fails is reported on the report pipe, and the child exits.
    fn isolate_child(
        &self,
        seq: u64,
        session: bool,
        cpu: Option<u64>,
        others: u64,
        p: &Pipes,
        ruleset: OwnedFd,
    ) -> i32 {
        let l = &self.cfg.limits;
        let null = self.p.null.as_raw_fd();
        // 0 stdin, 1 stdout, 2 stderr, 3 requests, 4 report; during the warm-up 1, 2 and 4
        // are /dev/null and the pipes wait at 5, 6 and 7 (the bootstrap moves them); 8 the
        // Landlock ruleset until it is enforced.
        let fds = [
            null,
            null,
            null,
            p.req_r.as_raw_fd(),
            null,
            p.out_w.as_raw_fd(),
            p.err_w.as_raw_fd(),
            p.res_w.as_raw_fd(),
            ruleset.as_raw_fd(),
        ];
        let cpu_seconds = if session {
            cpu
        } else {
            l.cpu.map(|c| c.as_secs() + u64::from(c.subsec_nanos() > 0))
        };
        let setup = ChildSetup {
            stage: if session {
                Stage::WarmSession
            } else {
                Stage::WarmRequest
            },
            fds: &fds,
            last_cloexec: false,
            // A Python object the child inherits may close its descriptor one day (matplotlib
            // drops its cached fonts after a fork): it then closes /dev/null, never a
            // descriptor the child opened since under the same number.
            placeholders: &self.inherited,
            rlimits: Rlimits {
                memory: l.memory,
                cpu_seconds,
                // The jail's init and the zygote run as the same user, and other live
                // children (sessions) too: the request's own count comes on top.
                nproc: u64::from(l.processes) + 2 + others,
                open_files: u64::from(l.open_files),
                file_size: l.file_size,
            },
            tmp_options: Some(&self.p.tmp_options),
            landlock: Some((8, self.p.tmp_rights)),
            seccomp: Some(&self.p.filter),
            after_step: self.cfg.trace.then_some(trace_step as fn(Step)),
            inject: self.cfg.inject.filter(|i| i.child == seq).map(|i| i.step),
            disabled: crate::layers::Layers::NONE,
        };
        let mut report = p.res_w.as_raw_fd();
        let result = isolate::enter(&setup, &mut report);
        // The descriptors above were moved or closed by number: never close them again.
        std::mem::forget(ruleset);
        match result {
            Ok(()) => {
                if session {
                    ROLE_SESSION
                } else {
                    ROLE_REQUEST
                }
            }
            Err(e) => {
                let frame = Report::SetupFailed {
                    step: e.step.name().to_string(),
                    message: e.message,
                }
                .encode();
                let _ = sys::write_all(report, &frame);
                sys::exit_now(SETUP_FAILED)
            }
        }
    }
}

/// Whether a request child's request pipe (`fd`) holds something to read already: its warm-up is
/// taken only while nothing waits (`bootstrap/warm.py`).
/// `timeout_ms` as `poll`'s: 0 asks, -1 waits (a traced child tells its idle time apart).
pub fn request_waiting(fd: RawFd, timeout_ms: i32) -> std::io::Result<bool> {
    sys::readable(fd, timeout_ms)
}

/// A traced child's isolation step has ended.
fn trace_step(step: Step) {
    trace::mark(step.name());
}

struct Prepared {
    null: OwnedFd,
    /// A pidfd of the zygote itself: `setns` to it returns to its own PID namespace.
    own_pid_ns: OwnedFd,
    rules: Vec<(OwnedFd, u64)>,
    /// Landlock: handled filesystem and network rights, scopes, the rights of `/tmp`.
    handled: u64,
    net: u64,
    scoped: u64,
    tmp_rights: u64,
    tmp_options: CString,
    /// The holder under the requests' `/tmp`s (an `O_PATH` descriptor of its root), and how
    /// many ended requests' `/tmp`s it holds.
    tmp_holder: OwnedFd,
    tmp_kept: usize,
    filter: Vec<libc::sock_filter>,
}

/// Mount the holder of [`Zygote::fresh_tmp`] at `/tmp` (a small tmpfs, mode 0700, that only
/// the zygote makes directories in) and return a descriptor of its root.
fn mount_tmp_holder() -> Result<OwnedFd, ZygoteError> {
    let options =
        CString::new(format!("size=64k,nr_inodes={},mode=700", TMP_KEPT + 8)).expect("no NUL");
    isolate::mount_tmp(Some(&options)).map_err(zerr("mount the /tmp holder"))?;
    sys::open_path(Path::new("/tmp")).map_err(zerr("/tmp"))
}

/// A child's pipes: request (host writes), stdout, stderr, report (host reads). The host's
/// ends are non-blocking.
struct Pipes {
    req_r: OwnedFd,
    req_w: OwnedFd,
    out_r: OwnedFd,
    out_w: OwnedFd,
    err_r: OwnedFd,
    err_w: OwnedFd,
    res_r: OwnedFd,
    res_w: OwnedFd,
}

impl Pipes {
    fn new() -> std::io::Result<Pipes> {
        let (req_r, req_w) = sys::pipe()?;
        let (out_r, out_w) = sys::pipe()?;
        let (err_r, err_w) = sys::pipe()?;
        let (res_r, res_w) = sys::pipe()?;
        for fd in [&req_w, &out_r, &err_r, &res_r] {
            sys::set_nonblocking(fd.as_fd())?;
        }
        Ok(Pipes {
            req_r,
            req_w,
            out_r,
            out_w,
            err_r,
            err_w,
            res_r,
            res_w,
        })
    }
}

/// The phases of a traced child (`ZygoteConfig::trace`, set by [`super::TRACE_ENV`]: `make
/// bench`'s per-phase table): durations on the monotonic clock and the page faults the child
/// took in each, kept in the child's memory until the bootstrap sends them before its `Done`
/// ([`send_trace`]). The zygote's own work for the child (done before the fork) is noted in the
/// zygote and inherited by the child with its memory.
pub mod trace {
    use crate::protocol::{Mark, Report, TRACE_MAX};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    struct Tracer {
        on: bool,
        last: Option<Instant>,
        last_faults: u64,
        marks: Vec<Mark>,
    }

    static TRACER: Mutex<Tracer> = Mutex::new(Tracer {
        on: false,
        last: None,
        last_faults: 0,
        marks: Vec::new(),
    });

    fn tracer() -> std::sync::MutexGuard<'static, Tracer> {
        TRACER.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults() -> u64 {
        // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        (ru.ru_minflt + ru.ru_majflt) as u64
    }

    /// In the zygote, right before the fork: start a child's trace with the zygote's work for it
    /// (`(phase, nanoseconds)`). A child's fault counters start at zero.
    pub(crate) fn begin(zygote: &[(&str, Duration)]) {
        let mut t = tracer();
        t.on = true;
        t.marks = zygote
            .iter()
            .map(|(phase, took)| Mark {
                phase: (*phase).to_string(),
                nanos: took.as_nanos() as u64,
                faults: 0,
            })
            .collect();
        t.last_faults = 0;
        t.last = Some(Instant::now());
    }

    /// The phase that has just ended (a no-op unless tracing).
    pub fn mark(phase: &str) {
        let mut t = tracer();
        if !t.on || t.marks.len() >= TRACE_MAX {
            return;
        }
        let (now, f) = (Instant::now(), faults());
        let since = t.last.map_or(Duration::ZERO, |l| now.duration_since(l));
        let m = Mark {
            phase: phase.to_string(),
            nanos: since.as_nanos() as u64,
            faults: f.saturating_sub(t.last_faults),
        };
        t.marks.push(m);
        t.last = Some(now);
        t.last_faults = f;
    }

    /// The bootstrap's phases, by number (`bootstrap/warm.py`).
    pub const BOOTSTRAP_PHASES: [&str; 4] = [
        "after-fork hooks (PyOS_AfterFork_Child)",
        "the child warms its own request path",
        "(idle: waiting for the request)",
        "the request: read, decode, compile, run, report",
    ];

    /// Write the trace as a `Trace` frame on `fd` (the report pipe); nothing unless tracing.
    pub fn send_trace(fd: std::os::fd::RawFd) -> std::io::Result<()> {
        let marks = {
            let t = tracer();
            if !t.on {
                return Ok(());
            }
            t.marks.clone()
        };
        crate::sys::write_all(fd, &Report::Trace(marks).encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's answer changes with a second thread (the test harness has threads of its
    /// own: asked in a forked child, which has one).
    #[test]
    fn one_thread_is_asked_of_the_kernel() {
        let code = sys::in_child(|| {
            if sys::single_threaded().ok() != Some(true) {
                return 1;
            }
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let t = std::thread::spawn(move || {
                let _ = rx.recv();
            });
            let two = sys::single_threaded().ok() == Some(false);
            drop(tx);
            let _ = t.join();
            if two {
                0
            } else {
                2
            }
        })
        .unwrap();
        assert_eq!(code, 0);
    }

    /// What a mapping adds is measured, and the process's own limit is put back.
    #[test]
    fn address_space_is_measured_without_proc() {
        let code = sys::in_child(|| {
            let before = sys::getrlimit(libc::RLIMIT_AS).unwrap();
            let a = address_space_used().unwrap();
            let block = std::hint::black_box(vec![0u8; 64 << 20]);
            let b = address_space_used().unwrap();
            drop(block);
            let grew = b.saturating_sub(a) >> 20;
            if sys::getrlimit(libc::RLIMIT_AS).unwrap() != before {
                return 1;
            }
            if (63..=66).contains(&grew) {
                0
            } else {
                2
            }
        })
        .unwrap();
        assert_eq!(code, 0);
    }
}

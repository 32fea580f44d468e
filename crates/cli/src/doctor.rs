//! `pysandbox doctor`: what this machine offers, what pysandbox would use, and whether a jail runs.

use anyhow::Result;
use pysandbox_core::policy::Policy;
use pysandbox_core::run::{self, RunRequest, Source};
use pysandbox_core::warm::{self, Pool, PoolOptions};
use pysandbox_core::{interp, landlock, JailSpec, Limits, Network, OutputMode, Status, Stdin};
use std::path::Path;
use std::process::ExitCode;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

pub fn run(python: Option<&Path>) -> Result<ExitCode> {
    let mut ok = true;
    let mut line = |good: bool, what: &str, detail: String| {
        println!("{} {what:<22} {detail}", if good { "ok  " } else { "FAIL" });
        ok &= good;
    };
    let kernel = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    line(true, "kernel", kernel);
    let max_userns = read("/proc/sys/user/max_user_namespaces")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    line(
        max_userns > 0,
        "user namespaces",
        format!("max_user_namespaces = {max_userns}"),
    );
    if let Some(v) = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        line(
            v == "0",
            "apparmor userns",
            format!(
                "apparmor_restrict_unprivileged_userns = {v} (1 blocks unprivileged sandboxes)"
            ),
        );
    }
    let abi = landlock::abi().unwrap_or(0);
    line(
        abi >= 1,
        "landlock",
        if abi == 0 {
            "absent: need Linux >= 5.13 with landlock in the lsm= list".into()
        } else {
            format!(
                "ABI {abi}: filesystem rules{}{}",
                if abi >= 4 {
                    ", TCP bind/connect denied without network"
                } else {
                    ""
                },
                if abi >= 6 {
                    ", signal and abstract-socket scoping"
                } else {
                    ""
                }
            )
        },
    );
    let seccomp = read("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    line(
        seccomp.contains("user_notif") && seccomp.contains("kill_process"),
        "seccomp",
        {
            let c = pysandbox_core::seccomp::counts();
            format!(
                "{} syscalls reachable ({} allowed, {} argument-filtered), {} refused by name, \
                 {} kill the process, the rest fail with EPERM (kernel actions: {})",
                c.reachable(),
                c.allowed,
                c.filtered,
                c.refused,
                c.killed,
                seccomp.trim()
            )
        },
    );
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cgroup v2 (unified)".to_string()
    } else if Path::new("/sys/fs/cgroup/memory").exists() {
        "cgroup v1/hybrid: not used, rlimits enforce the limits".to_string()
    } else {
        "none: rlimits enforce the limits".to_string()
    };
    line(true, "cgroups", cgroup);
    if let Some(v) = read("/proc/sys/dev/tty/legacy_tiocsti") {
        line(
            true,
            "tiocsti",
            format!("legacy_tiocsti = {v} (the jail runs in a new session without a terminal, and seccomp refuses TIOCSTI)"),
        );
    }
    match interp::resolve(python) {
        Err(e) => line(false, "python", e.to_string()),
        Ok(interpreter) => {
            line(
                true,
                "python",
                format!(
                    "{} ({}), {} read-only binds (+ {} libraries for site-packages' extension \
                     modules with the full preset)",
                    interpreter.executable.display(),
                    interpreter.version,
                    interpreter.binds.len(),
                    interpreter.site_libraries.len()
                ),
            );
            let spec = JailSpec {
                interpreter,
                args: vec!["-I".into(), "-S".into(), "-B".into()],
                env: Vec::new(),
                limits: Limits::default(),
                read_paths: Vec::new(),
                write_paths: Vec::new(),
                network: Network::None,
                allow_exec: false,
                warm: false,
                zygote_library: None,
                inject: None,
                disabled: pysandbox_core::layers::Layers::NONE,
            };
            let req = RunRequest {
                source: Source::Code("print(6 * 7)".into()),
                args: Vec::new(),
                stdin: Stdin::Null,
                output: OutputMode::Capture,
                guard: None,
                api: None,
                warm: None,
                direct_stdout: None,
                extras: Default::default(),
            };
            match run::run(&spec, req) {
                Ok(o) if o.status == Status::Exited(0) && o.stdout.data == b"42\n" => line(
                    true,
                    "sandboxed run",
                    format!("print(6 * 7) in {:.1} ms", o.wall_time.as_secs_f64() * 1e3),
                ),
                Ok(o) => line(
                    false,
                    "sandboxed run",
                    format!(
                        "{:?}: {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr.data).trim()
                    ),
                ),
                Err(e) => line(false, "sandboxed run", e.to_string()),
            }
        }
    }
    // Warm mode, last: a pool starts threads, and the cold run above needs a single thread.
    let (good, detail) = warm_check(python);
    line(good, "warm pool", detail);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The zygote library, and one request through a warm worker (its second: the first child was
/// prepared while the worker started).
fn warm_check(python: Option<&Path>) -> (bool, String) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return (false, format!("finding the pysandbox binary: {e}")),
    };
    let lib = match warm::find_library(&exe) {
        Ok(l) => l,
        Err(e) => return (false, e.to_string()),
    };
    let policy = Policy {
        python: python.map(Path::to_path_buf),
        ..Policy::default()
    };
    let mut o = PoolOptions::new(exe);
    o.workers = 1;
    let pool = match Pool::new(policy, o) {
        Ok(p) => p,
        Err(e) => return (false, e.to_string()),
    };
    let _ = pool.run("pass", None);
    // Let the worker prepare its next child, as it does between requests.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t = std::time::Instant::now();
    let r = pool.run("print(6 * 7)", None);
    let took = t.elapsed();
    pool.shutdown();
    match r {
        Ok(o) if o.run.stdout == "42\n" => (
            true,
            format!(
                "{} loaded by the zygote; print(6 * 7) in {:.2} ms",
                lib.display(),
                took.as_secs_f64() * 1e3
            ),
        ),
        Ok(o) => (
            false,
            format!("unexpected answer: {:?} {}", o.run.stdout, o.run.stderr),
        ),
        Err(e) => (false, e.to_string()),
    }
}

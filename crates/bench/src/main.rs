//! `pysandbox-bench [RUNS]`: wall time of `print(1+1)` through `pysandbox run` (cold), side by side
//! with plain `python -I -S -c` and with bubblewrap given equivalent isolation, interleaved so that
//! machine noise hits every row alike. Prints median, p99 and the ratio to plain python; then the
//! warm pool: latency from the Rust API, `pysandbox batch` throughput, CPU-bound overhead and the
//! unique memory of an idle worker; then a pandas request with and without preloaded packages.
//! `pysandbox-bench RUNS throughput`: `pysandbox batch` against the bare-fork ceiling alone, three
//! interleaved rounds of RUNS runs, with the CPU and page faults each run costs.
#![forbid(unsafe_code)]

mod server;
mod soak;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CODE: &str = "print(1+1)";

struct Row {
    name: String,
    cmd: Vec<String>,
    times: Vec<Duration>,
}

fn pysandbox_binary() -> PathBuf {
    if let Ok(p) = std::env::var("PYSANDBOX_BIN") {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe().expect("current exe");
    me.with_file_name("pysandbox")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn time_once(cmd: &[String]) -> Duration {
    let start = Instant::now();
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    let elapsed = start.elapsed();
    if out.stdout != b"2\n" {
        panic!(
            "{:?} printed {:?} (stderr {:?})",
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    elapsed
}

/// The warm rows' policy: the `stdlib` preset with this interpreter.
fn stdlib_policy(python: &str) -> pysandbox_core::policy::Policy {
    let mut policy =
        pysandbox_core::policy::Policy::from_toml_str("preset = \"stdlib\"").expect("policy");
    policy.python = Some(PathBuf::from(python));
    policy
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `pysandbox-bench soak [N]`: the soak (docs/soak.md), N requests (default 20,000).
    if std::env::args().nth(1).as_deref() == Some("soak") {
        let n = std::env::args()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000);
        let interp =
            pysandbox_core::interp::resolve(None).expect("resolving the python interpreter");
        std::process::exit(soak::run(n, &interp.executable.to_string_lossy()));
    }
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let interp = pysandbox_core::interp::resolve(None).expect("resolving the python interpreter");
    let python = interp.executable.to_string_lossy().into_owned();
    // `pysandbox-bench RUNS packages`: the packages rows alone.
    if std::env::args().nth(2).as_deref() == Some("packages") {
        packages(runs, &python);
        return;
    }
    // `pysandbox-bench RUNS phases`: the per-phase table of a warm child alone;
    // `pysandbox-bench RUNS tails`: where a spaced-out warm request's time goes, median and p99.
    match std::env::args().nth(2).as_deref() {
        Some("phases") => return phases(runs, &stdlib_policy(&python)),
        Some("tails") => return tails(runs, &stdlib_policy(&python)),
        _ => {}
    }
    // `pysandbox-bench RUNS throughput`: `pysandbox batch` against the bare-fork ceiling,
    // interleaved rounds of RUNS runs each, with the CPU and page faults per run.
    if std::env::args().nth(2).as_deref() == Some("throughput") {
        throughput(runs, &python);
        return;
    }
    // `pysandbox-bench RUNS warm`: the warm pool's rows alone (ratios to a bare python's p50
    // over 20 runs).
    if std::env::args().nth(2).as_deref() == Some("warm") {
        let mut t: Vec<Duration> = (0..20)
            .map(|_| {
                time_once(&[
                    python.clone(),
                    "-I".into(),
                    "-S".into(),
                    "-c".into(),
                    CODE.into(),
                ])
            })
            .collect();
        t.sort();
        warm(runs, &python, percentile(&t, 0.5));
        return;
    }
    // `pysandbox-bench RUNS server`: the HTTP server's rows alone.
    if std::env::args().nth(2).as_deref() == Some("server") {
        server::run(runs, &python);
        return;
    }
    let s = |x: &str| x.to_string();
    let mut rows = vec![
        Row {
            name: format!("python -I -S -c ({})", interp.version),
            cmd: vec![python.clone(), s("-I"), s("-S"), s("-c"), s(CODE)],
            times: Vec::new(),
        },
        Row {
            name: s("pysandbox run (cold)"),
            cmd: vec![
                pysandbox_binary().to_string_lossy().into_owned(),
                s("run"),
                s("--python"),
                python.clone(),
                s("-c"),
                s(CODE),
            ],
            times: Vec::new(),
        },
    ];
    if let Some(bwrap) = which("bwrap") {
        // Equivalent isolation: every namespace, the same read-only binds, /dev, a private /tmp,
        // an empty environment, a new session, die-with-parent. (bubblewrap has no Landlock and
        // no seccomp policy of its own here: pysandbox does strictly more work.)
        let mut cmd = vec![
            bwrap.to_string_lossy().into_owned(),
            s("--unshare-all"),
            s("--die-with-parent"),
            s("--new-session"),
            s("--clearenv"),
            s("--dev"),
            s("/dev"),
            s("--tmpfs"),
            s("/tmp"),
            s("--chdir"),
            s("/tmp"),
        ];
        let head = cmd.clone();
        for b in &interp.binds {
            cmd.extend([
                s("--ro-bind"),
                b.source.to_string_lossy().into_owned(),
                b.target.to_string_lossy().into_owned(),
            ]);
        }
        cmd.extend([python.clone(), s("-I"), s("-S"), s("-c"), s(CODE)]);
        rows.push(Row {
            name: s("bubblewrap, the same binds"),
            cmd,
            times: Vec::new(),
        });
        // The baseline of issue 15: a few read-only directory binds (/usr, /lib, /lib64 and
        // the interpreter's prefix), as bubblewrap is usually used.
        let mut dirs = head;
        for d in ["/usr", "/lib", "/lib64"] {
            if Path::new(d).exists() {
                dirs.extend([s("--ro-bind"), s(d), s(d)]);
            }
        }
        let prefix = interp.prefix.to_string_lossy().into_owned();
        if !prefix.starts_with("/usr/") {
            dirs.extend([s("--ro-bind"), prefix.clone(), prefix]);
        }
        dirs.extend([python.clone(), s("-I"), s("-S"), s("-c"), s(CODE)]);
        rows.push(Row {
            name: s("bubblewrap, directory binds"),
            cmd: dirs,
            times: Vec::new(),
        });
    } else {
        eprintln!("bwrap not found on PATH: bubblewrap row skipped (apt-get install bubblewrap)");
    }
    for row in &rows {
        for _ in 0..10 {
            time_once(&row.cmd);
        }
    }
    for _ in 0..runs {
        for row in &mut rows {
            row.times.push(time_once(&row.cmd));
        }
    }
    let base = {
        let mut t = rows[0].times.clone();
        t.sort();
        percentile(&t, 0.5)
    };
    println!(
        "print(1+1), {runs} interleaved runs each, {} on {}",
        Path::new(&python).display(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "{:<34} {:>10} {:>10} {:>14}",
        "command", "p50 ms", "p99 ms", "p50 / python"
    );
    for row in &mut rows {
        row.times.sort();
        let p50 = percentile(&row.times, 0.5);
        let p99 = percentile(&row.times, 0.99);
        println!(
            "{:<34} {:>10.2} {:>10.2} {:>13.2}x",
            row.name,
            ms(p50),
            ms(p99),
            p50.as_secs_f64() / base.as_secs_f64()
        );
    }
    warm(runs, &python, base);
}

fn warm(runs: usize, python: &str, base: Duration) {
    use pysandbox_core::warm::{Pool, PoolOptions};
    let policy = stdlib_policy(python);
    let mut opts = PoolOptions::new(pysandbox_binary());
    opts.workers = 1;
    let pool = Pool::new(policy.clone(), opts).expect("start a warm worker");
    let run = || pool.run(CODE, None).expect("warm run");
    // Back to back, each request also waits for the previous child's replacement; spaced out,
    // the child is ready when the request comes (5 ms: the CPU's caches are still warm; 20 ms:
    // they are not).
    timed_row("warm pool, back to back", runs, base, Duration::ZERO, run);
    timed_row(
        "warm pool, 5 ms between requests",
        runs,
        base,
        Duration::from_millis(5),
        run,
    );
    timed_row(
        "warm pool, 20 ms between requests",
        runs,
        base,
        Duration::from_millis(20),
        run,
    );
    // What the Python row's `Sandbox.execute('print(1+1)')` asks, from Rust: a pool that warms
    // the package's exec path (as the package's does), the request it sends (globals in and
    // out). The Python row against this one is the cost of the Python layer alone.
    let mut opts = PoolOptions::new(pysandbox_binary());
    opts.workers = 1;
    opts.warm_up = pysandbox_core::warm::WarmUp::Api;
    let api_pool = Pool::new(policy.clone(), opts).expect("start a warm worker");
    let mut req = pysandbox_core::warm::Request::new(None, CODE, None);
    req.api = Some(serde_json::json!({"op": "exec", "input": {"d": [["globals", {"d": []}]]}}));
    timed_row(
        "warm exec path (Rust), 5 ms apart",
        runs,
        base,
        Duration::from_millis(5),
        || api_pool.run_request(&req).expect("warm exec request"),
    );
    api_pool.shutdown();
    python_api(runs, python, base);
    floor(runs, python, base);
    phases(runs, &policy);
    tails(runs, &policy);
    // A session: one isolated child keeps its state, no fork per call.
    let mut session =
        pysandbox_core::warm::Session::open(&pysandbox_binary(), &policy, Duration::from_secs(600))
            .expect("open a session");
    timed_row(
        "warm session (state kept)",
        runs,
        base,
        Duration::ZERO,
        || session.execute(CODE).expect("session call"),
    );
    drop(session);
    monty(runs, python, base);
    // Unique memory of the idle worker: every process of its tree (worker, init, zygote and the
    // request child waiting in advance).
    std::thread::sleep(Duration::from_millis(200));
    let (dirty, clean) = idle_uss_kib(&pool);
    pool.shutdown();

    // CPU-bound pure Python: fib(27) in plain python and in a warm request.
    let fib = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nimport time\nt = time.perf_counter()\nfib(27)\nprint(time.perf_counter() - t)";
    // Interleaved, 21 of each: this VM's speed drifts by more than the difference sought.
    let mut opts = PoolOptions::new(pysandbox_binary());
    opts.workers = 1;
    let pool = Pool::new(policy.clone(), opts).expect("start a warm worker");
    let secs = |text: &str| text.trim().parse::<f64>().unwrap_or(f64::NAN);
    let (mut plain, mut sandboxed) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        let out = Command::new(python)
            .args(["-I", "-S", "-c", fib])
            .output()
            .expect("python");
        plain.push(secs(&String::from_utf8_lossy(&out.stdout)));
        sandboxed.push(secs(&pool.run(fib, None).expect("fib").run.stdout));
    }
    pool.shutdown();
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (p, w) = (med(plain), med(sandboxed));

    // Throughput: `pysandbox batch` with one worker per CPU against the bare-fork ceiling, in
    // interleaved rounds (this VM's speed drifts by more than the difference sought), and what
    // each run cost every process involved (CPU, page faults; `pysandbox-bench N throughput`
    // adds the default policy's batch).
    let n = 2000;
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!();
    let mut ratios = Vec::new();
    for round in 1..=THROUGHPUT_ROUNDS {
        // Which goes first alternates: a drift of the VM's speed within a round does not
        // always favour the same side.
        let ceiling_first = round % 2 == 0;
        let ceiling_run = || per_run(n, || fork_ceiling(python, n, cpus));
        let first = ceiling_first.then(ceiling_run);
        let start = Instant::now();
        let (rate, batch_cpu, batch_faults) =
            per_run(n, || batch_throughput(python, n, &["--preset", "stdlib"]));
        let secs = start.elapsed().as_secs_f64();
        let (ceiling, ceil_cpu, ceil_faults) = first.unwrap_or_else(ceiling_run);
        let Some(f) = ceiling else {
            println!("(the fork-per-run ceiling could not be measured)");
            break;
        };
        ratios.push(rate / f);
        println!(
            "round {round}: pysandbox batch {n}/{n} runs of print(1+1) in {secs:.2} s = {rate:.0} runs/s on {cpus} CPUs (pool start included), {batch_cpu:.2} ms of CPU and {batch_faults:.0} page faults per run; a bare fork per run ({cpus} plain python processes forking, the ceiling of any fork per run here) {f:.0} runs/s, {ceil_cpu:.2} ms and {ceil_faults:.0} faults: batch = {:.2} of the ceiling",
            rate / f
        );
    }
    if !ratios.is_empty() {
        ratios.sort_by(|a, b| a.total_cmp(b));
        println!(
            "throughput: batch / ceiling, median of {} interleaved rounds: {:.2} (rounds {:.2} to {:.2})",
            ratios.len(),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    println!(
        "fib(27): plain {:.1} ms, warm sandbox {:.1} ms ({:+.1}%)",
        p * 1e3,
        w * 1e3,
        (w / p - 1.0) * 100.0
    );
    println!(
        "idle warm worker: {:.1} MiB unique memory (USS, all its processes): {:.1} MiB written by it (what each further worker adds), {:.1} MiB of file pages no other process maps",
        (dirty + clean) as f64 / 1024.0,
        dirty as f64 / 1024.0,
        clean as f64 / 1024.0
    );
    packages(runs, python);
}

/// The per-phase cost of a warm child: a worker whose children report each phase of their
/// start (`PYSANDBOX_TRACE_PHASES`: durations and page faults), for `print(1+1)` back to back
/// (`pysandbox batch`'s case) and for the Python package's exec path 5 ms apart (its warm-up
/// taken while idle). What the caller sees per request is printed under the phases.
fn phases(runs: usize, policy: &pysandbox_core::policy::Policy) {
    use pysandbox_core::warm::{Pool, PoolOptions, Request, WarmUp, TRACE_ENV};
    for (title, warm_up, pause) in [
        ("print(1+1) back to back", WarmUp::Code, Duration::ZERO),
        (
            "the Python package's exec path, 5 ms apart",
            WarmUp::Api,
            Duration::from_millis(5),
        ),
    ] {
        // The worker inherits the variable at its start; nothing else starts a worker meanwhile.
        std::env::set_var(TRACE_ENV, "1");
        let mut opts = PoolOptions::new(pysandbox_binary());
        opts.workers = 1;
        opts.warm_up = warm_up;
        let pool = Pool::new(policy.clone(), opts).expect("start a traced warm worker");
        std::env::remove_var(TRACE_ENV);
        let mut req = Request::new(None, CODE, None);
        if warm_up == WarmUp::Api {
            req.api = Some(serde_json::json!({"op": "exec", "input": {"d": []}}));
        }
        let mut names: Vec<String> = Vec::new();
        let mut per: Vec<Vec<(u64, u64)>> = Vec::new();
        let mut seen = Vec::with_capacity(runs);
        for i in 0..runs + 10 {
            std::thread::sleep(pause);
            let start = Instant::now();
            let o = pool.run_request(&req).expect("traced warm run");
            let took = start.elapsed();
            assert_eq!(o.run.stdout, "2\n", "{o:?}");
            if i < 10 {
                continue;
            }
            seen.push(took);
            for m in &o.trace {
                let at = names.iter().position(|n| *n == m.phase).unwrap_or_else(|| {
                    names.push(m.phase.clone());
                    per.push(Vec::new());
                    names.len() - 1
                });
                per[at].push((m.nanos, m.faults));
            }
        }
        pool.shutdown();
        if names.is_empty() {
            println!("(the warm children reported no phases: per-phase table skipped)");
            return;
        }
        seen.sort();
        println!();
        println!("a warm child, phase by phase: {title} ({runs} requests, medians)");
        println!("{:<56} {:>9} {:>8}", "phase", "µs", "faults");
        let (mut total, mut faults) = (0.0, 0);
        for (name, v) in names.iter().zip(&mut per) {
            let mut ns: Vec<u64> = v.iter().map(|x| x.0).collect();
            let mut f: Vec<u64> = v.iter().map(|x| x.1).collect();
            ns.sort_unstable();
            f.sort_unstable();
            let (us, fl) = (ns[ns.len() / 2] as f64 / 1e3, f[f.len() / 2]);
            if !name.starts_with('(') {
                total += us;
                faults += fl;
            }
            println!("{name:<56} {us:>9.1} {fl:>8}");
        }
        println!(
            "{:<56} {total:>9.1} {faults:>8}",
            "the phases' sum (idle excluded)"
        );
        println!(
            "{:<56} {:>9.1}",
            "one request as the caller sees it",
            percentile(&seen, 0.5).as_secs_f64() * 1e6
        );
    }
}

/// Unique memory of an idle pool's workers, every process of their trees (worker, init, zygote
/// and the request child waiting in advance): (dirty, clean) KiB, see [`tree_uss_kib`].
fn idle_uss_kib(pool: &pysandbox_core::warm::Pool) -> (u64, u64) {
    std::thread::sleep(Duration::from_millis(200));
    pool.worker_pids()
        .iter()
        .map(|p| tree_uss_kib(*p))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Modules the packages rows preload.
const PRELOAD: &[&str] = &["numpy", "pandas", "matplotlib.pyplot"];
/// A pandas request: a DataFrame built and described.
const DESCRIBE: &str = "import pandas as pd\n\
    df = pd.DataFrame({'x': range(1000), 'y': [i % 7 for i in range(1000)]})\n\
    print(df.describe().shape)";
const DESCRIBED: &str = "(8, 2)\n";

/// Packages ready before the request: [`DESCRIBE`] in a fresh warm request of a `full` pool
/// with [`PRELOAD`] preloaded, the same without the preload, in a bare `python -I -c` (which
/// pays the imports) and in one already-running interpreter that imported pandas (no sandbox,
/// no fork); then the unique memory of an idle worker with the preloads. Skipped without the
/// packages (`make deps`).
fn packages(runs: usize, python: &str) {
    use pysandbox_core::policy::Policy;
    use pysandbox_core::warm::{Pool, PoolOptions};
    let have = Command::new(python)
        .args(["-I", "-c", "import numpy, pandas, matplotlib"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        println!("\n(packages rows skipped: numpy, pandas, matplotlib are not installed for {python}: make deps)");
        return;
    }
    let pool = |preload: &[&str], warmup: Option<&str>| {
        let mut policy = Policy::from_toml_str("preset = \"full\"").expect("policy");
        policy.python = Some(PathBuf::from(python));
        policy.preload_modules(preload).expect("preload");
        policy.warmup = warmup.map(str::to_string);
        policy.limits.wall = Duration::from_secs(30);
        let mut opts = PoolOptions::new(pysandbox_binary());
        opts.workers = 1;
        Pool::new(policy, opts).expect("start a warm worker")
    };
    let pause = Duration::from_millis(5);
    let slow = runs.clamp(1, 20);
    let time = |n: usize, call: &mut dyn FnMut() -> String| {
        let mut t = Vec::with_capacity(n);
        for _ in 0..n {
            std::thread::sleep(pause);
            let start = Instant::now();
            let out = call();
            t.push(start.elapsed());
            assert_eq!(out, DESCRIBED);
        }
        t.sort();
        t
    };
    let warm = |p: &Pool, n: usize| {
        let mut call = || p.run(DESCRIBE, None).expect("warm run").run.stdout;
        time(3, &mut call);
        time(n, &mut call)
    };
    let started = Instant::now();
    let preloaded = pool(PRELOAD, None);
    let start_secs = started.elapsed().as_secs_f64();
    let with = warm(&preloaded, runs);
    let (dirty, clean) = idle_uss_kib(&preloaded);
    preloaded.shutdown();
    let warmed = pool(PRELOAD, Some(WARMUP));
    let with_warmup = warm(&warmed, runs);
    let (wdirty, wclean) = idle_uss_kib(&warmed);
    warmed.shutdown();
    let plain = pool(&[], None);
    let without = warm(&plain, slow);
    plain.shutdown();
    let bare = time(slow, &mut || {
        let out = Command::new(python)
            .args(["-I", "-c", DESCRIBE])
            .output()
            .expect("python");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let running = running_interpreter(python, "import pandas", DESCRIBE, DESCRIBED, runs, pause);
    // What any design that forks a fresh process per request pays on this machine: the same
    // interpreter, pandas imported, its objects frozen out of the collector, forking a child per
    // request that runs the code and exits (no namespace, no jail, no limit). The child's first
    // touches of the parent's pages are copy-on-write faults.
    let fork = format!(
        "import os, sys\npid = os.fork()\nif pid == 0:\n    exec({DESCRIBE:?})\n    sys.stdout.flush()\n    os._exit(0)\nos.waitpid(pid, 0)\n"
    );
    let forked = running_interpreter(
        python,
        "import gc, pandas\ngc.collect()\ngc.freeze()",
        &fork,
        DESCRIBED,
        runs,
        pause,
    );
    ratio_table(
        &format!(
            "pandas DataFrame(1000 rows).describe(), 5 ms apart; preloads: {}",
            PRELOAD.join(", ")
        ),
        &[
            ("one running interpreter (no sandbox)", &running),
            ("os.fork() per request from it (no sandbox)", &forked),
            ("warm pool, preloaded", &with),
            ("warm pool, preloaded + warmup", &with_warmup),
            ("warm pool, not preloaded", &without),
            ("bare python -I -c (pays the imports)", &bare),
        ],
    );
    println!(
        "idle warm worker with these preloads: {:.1} MiB unique memory (USS, all its processes): {:.1} MiB written by it (what each further worker adds), {:.1} MiB of file pages no other process maps; it started in {start_secs:.2} s",
        (dirty + clean) as f64 / 1024.0,
        dirty as f64 / 1024.0,
        clean as f64 / 1024.0
    );
    println!(
        "idle warm worker with these preloads and the warmup: {:.1} MiB unique memory ({:.1} MiB written by it)",
        (wdirty + wclean) as f64 / 1024.0,
        wdirty as f64 / 1024.0,
    );
    println!("warmup: {WARMUP:?}");
    plots(
        runs,
        python,
        &pool(PRELOAD, None),
        &pool(PRELOAD, Some(WARMUP)),
        pause,
    );
}

/// The packages rows' `warmup`: a small DataFrame described and a small plot drawn once in
/// the zygote (lazy imports, caches, the font), which every request would otherwise pay.
const WARMUP: &str = "import io\nimport pandas as pd\nimport matplotlib.pyplot as plt\n\
    pd.DataFrame({'x': range(10), 'y': range(10)}).describe()\n\
    fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([1, 2])\n\
    fig.savefig(io.BytesIO(), format='png')";

/// [`PLOT`] in cell mode on `pool`, `runs` times `pause` apart (then the pool is shut down):
/// the times, sorted.
fn plot_cells(runs: usize, pool: &pysandbox_core::warm::Pool, pause: Duration) -> Vec<Duration> {
    use pysandbox_core::warm::Request;
    let mut req = Request::code(PLOT);
    req.cell = true;
    let cell = || {
        let o = pool.run_request(&req).expect("warm cell");
        let png = o.run.results.first().and_then(|r| r.data.get("image/png"));
        assert!(
            png.is_some_and(|p| p.starts_with("iVBORw0KGgo")),
            "no PNG: {:?}",
            o.run
        );
    };
    let mut t = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        std::thread::sleep(pause);
        let start = Instant::now();
        cell();
        if i >= 3 {
            t.push(start.elapsed());
        }
    }
    pool.shutdown();
    t.sort();
    t
}

/// A line plot: built by the code, a PNG out.
const PLOT: &str = "import matplotlib.pyplot as plt\n\
    fig, ax = plt.subplots(figsize=(4, 3), dpi=72)\n\
    ax.plot(range(100), [i * i for i in range(100)])";

/// A matplotlib line plot returned as PNG: in cell mode on a warm pool with pyplot preloaded
/// (the figure left open becomes an image/png result), against `savefig` into a buffer in one
/// running interpreter (no sandbox).
fn plots(
    runs: usize,
    python: &str,
    pool: &pysandbox_core::warm::Pool,
    warmed: &pysandbox_core::warm::Pool,
    pause: Duration,
) {
    let warm = plot_cells(runs, pool, pause);
    let with_warmup = plot_cells(runs, warmed, pause);
    let savefig = format!(
        "import io\n{PLOT}\nbuf = io.BytesIO()\nfig.savefig(buf, format='png')\nplt.close(fig)\n\
         print(buf.getvalue()[:4] == b'\\x89PNG')"
    );
    let running = running_interpreter(
        python,
        "import io\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt",
        &savefig,
        "True\n",
        runs,
        pause,
    );
    ratio_table(
        "matplotlib line plot (100 points, 288x216) as PNG, 5 ms apart",
        &[
            ("one running interpreter, savefig (no sandbox)", &running),
            ("warm pool, cell mode, pyplot preloaded", &warm),
            ("warm pool, cell mode, preloaded + warmup", &with_warmup),
        ],
    );
}

/// A table of sorted timings: runs, p50, p99, and p50 as a ratio of the first row's.
fn ratio_table(title: &str, rows: &[(&str, &Vec<Duration>)]) {
    let base = percentile(rows[0].1, 0.5);
    println!();
    println!("{title}");
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>12}",
        "command", "runs", "p50 ms", "p99 ms", "p50 / running"
    );
    for (name, t) in rows {
        let p50 = percentile(t, 0.5);
        println!(
            "{:<44} {:>8} {:>10.2} {:>10.2} {:>11.2}x",
            name,
            t.len(),
            ms(p50),
            ms(percentile(t, 0.99)),
            p50.as_secs_f64() / base.as_secs_f64()
        );
    }
}

/// `code` in one plain interpreter that ran `setup` first and then reads code from a pipe: no
/// sandbox, no fork (what the work alone costs). The times of `runs` runs, sorted.
fn running_interpreter(
    python: &str,
    setup: &str,
    code: &str,
    expected: &str,
    runs: usize,
    pause: Duration,
) -> Vec<Duration> {
    use std::io::{BufRead, BufReader, Read, Write};
    let script = format!(
        "import os, sys\n{setup}\nr = sys.stdin.buffer\nwhile True:\n    n = r.readline()\n    if not n:\n        break\n    exec(compile(r.read(int(n)), '<string>', 'exec'), {{'__name__': '__main__'}})\n    sys.stdout.flush()\n    os.write(2, b'done\\n')\n"
    );
    let mut child = Command::new(python)
        .args(["-I", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut marks = BufReader::new(child.stderr.take().expect("stderr"));
    let mut t = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        std::thread::sleep(pause);
        let start = Instant::now();
        write!(stdin, "{}\n{code}", code.len()).expect("write");
        stdin.flush().expect("flush");
        let mut line = String::new();
        marks.read_line(&mut line).expect("marker");
        let mut out = vec![0u8; expected.len()];
        stdout.read_exact(&mut out).expect("output");
        if i >= 3 {
            t.push(start.elapsed());
        }
        assert_eq!(out, expected.as_bytes());
    }
    drop(stdin);
    let _ = child.wait();
    t.sort();
    t
}

/// Interleaved rounds of batch and ceiling in `make bench`'s throughput rows.
const THROUGHPUT_ROUNDS: usize = 5;

/// The ceiling of any design that forks a fresh child per run, on this machine: plain python
/// (no sandbox, no namespace, no limit), one process per CPU, each forking a child per run that
/// executes `print(1+1)` into a pipe and exits. Runs per second.
fn fork_ceiling(python: &str, n: usize, cpus: usize) -> Option<f64> {
    let script = format!(
        "import gc, os, sys, time\n\
         gc.collect(); gc.freeze()\n\
         def forker(k):\n\
         \x20   for _ in range(k):\n\
         \x20       r, w = os.pipe()\n\
         \x20       pid = os.fork()\n\
         \x20       if pid == 0:\n\
         \x20           os.dup2(w, 1)\n\
         \x20           exec(compile({CODE:?}, '<string>', 'exec'), {{'__name__': '__main__'}})\n\
         \x20           sys.stdout.flush()\n\
         \x20           os._exit(0)\n\
         \x20       os.close(w)\n\
         \x20       assert os.read(r, 16) == b'2\\n'\n\
         \x20       os.close(r)\n\
         \x20       os.waitpid(pid, 0)\n\
         t = time.perf_counter()\n\
         kids = []\n\
         for _ in range({cpus}):\n\
         \x20   pid = os.fork()\n\
         \x20   if pid == 0:\n\
         \x20       forker({per})\n\
         \x20       os._exit(0)\n\
         \x20   kids.append(pid)\n\
         ok = all(os.waitpid(k, 0)[1] == 0 for k in kids)\n\
         print({total} / (time.perf_counter() - t) if ok else 'failed')\n",
        per = n / cpus,
        total = n / cpus * cpus,
    );
    let out = Command::new(python)
        .args(["-I", "-S", "-c", &script])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// What this process's reaped descendants used so far (`/proc/self/stat`: `cminflt`,
/// `cutime + cstime`): page faults and CPU seconds. Every process of a batch or of the ceiling
/// is reaped by its parent, up to this process, so their sum is here once they have ended.
fn children_usage() -> (u64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')').expect("stat's command") + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 11 (cminflt), 16 and 17 (cutime, cstime) of proc(5), counted from 3 here.
    let ticks = 100.0; // USER_HZ on Linux
    (f[11 - 3], (f[16 - 3] + f[17 - 3]) as f64 / ticks)
}

/// `what` (which runs `n` runs in processes this one reaps), and what each run cost: its
/// result, the CPU in milliseconds and the minor page faults per run.
fn per_run<T>(n: usize, what: impl FnOnce() -> T) -> (T, f64, f64) {
    let (f0, c0) = children_usage();
    let out = what();
    let (f1, c1) = children_usage();
    (out, (c1 - c0) / n as f64 * 1e3, (f1 - f0) as f64 / n as f64)
}

/// `pysandbox batch` (the default policy and the `stdlib` preset) and the bare-fork ceiling,
/// `rounds` interleaved rounds of `n` runs: runs per second, CPU and minor page faults per run
/// (every process involved: the host, the workers' jails, zygotes and children).
fn throughput(n: usize, python: &str) {
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let rounds = 3;
    println!(
        "{:<36} {:>8} {:>11} {:>11} {:>10}",
        "throughput (print(1+1))", "runs/s", "CPU ms/run", "faults/run", "/ ceiling"
    );
    for round in 0..rounds {
        let ceiling = per_run(n, || fork_ceiling(python, n, cpus).expect("the ceiling"));
        let default = per_run(n, || batch_throughput(python, n, &[]));
        let stdlib = per_run(n, || batch_throughput(python, n, &["--preset", "stdlib"]));
        for (name, (rate, cpu, faults)) in [
            ("bare fork per run (ceiling)", ceiling),
            ("pysandbox batch", default),
            ("pysandbox batch --preset stdlib", stdlib),
        ] {
            println!(
                "{:<36} {:>8.0} {:>11.3} {:>11.0} {:>10.2}",
                format!("{name} #{}", round + 1),
                rate,
                cpu,
                faults,
                rate / ceiling.0
            );
        }
    }
}

/// Time `call` (after 10 warm-up calls, with `pause` before each, not counted) and print a row.
fn timed_row(
    name: &str,
    runs: usize,
    base: Duration,
    pause: Duration,
    mut call: impl FnMut() -> pysandbox_core::warm::WarmOutcome,
) {
    let mut t = Vec::with_capacity(runs);
    for i in 0..runs + 10 {
        std::thread::sleep(pause);
        let start = Instant::now();
        let o = call();
        let e = start.elapsed();
        assert_eq!(o.run.stdout, "2\n", "{o:?}");
        if i >= 10 {
            t.push(e);
        }
    }
    t.sort();
    let p50 = percentile(&t, 0.5);
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>13.3}x",
        name,
        ms(p50),
        ms(percentile(&t, 0.99)),
        p50.as_secs_f64() / base.as_secs_f64()
    );
}

/// The floor under a warm request: one plain interpreter, no isolation, no fork, that reads code
/// from a pipe, runs it and says so (what the CPU and the pipes alone cost here).
fn floor(runs: usize, python: &str, base: Duration) {
    for pause in [5, 20] {
        let t = running_interpreter(python, "", CODE, "2\n", runs, Duration::from_millis(pause));
        let p50 = percentile(&t, 0.5);
        println!(
            "{:<34} {:>10.2} {:>10.2} {:>13.3}x",
            format!("no sandbox, one process, {pause} ms"),
            ms(p50),
            ms(percentile(&t, 0.99)),
            p50.as_secs_f64() / base.as_secs_f64()
        );
    }
}

/// `pysandbox batch ARGS` (one worker per CPU unless ARGS say otherwise) over `n` lines of
/// `print(1+1)`, every answer checked: runs per second, the pool's start included.
pub(crate) fn batch_throughput(python: &str, n: usize, args: &[&str]) -> f64 {
    use std::io::Write;
    let input: String = (0..n)
        .map(|i| format!("{{\"id\": {i}, \"code\": \"print(1+1)\"}}\n"))
        .collect();
    let start = Instant::now();
    let mut child = Command::new(pysandbox_binary())
        .args(["batch", "--python", python])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting pysandbox batch");
    let mut stdin = child.stdin.take().expect("stdin");
    // Written from a thread: the answers may fill stdout before every line is read.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("batch");
    let _ = writer.join();
    let took = start.elapsed();
    let good = String::from_utf8_lossy(&out.stdout)
        .matches("\"stdout\":\"2\\n\"")
        .count();
    assert_eq!(good, n, "every batch answer correct");
    n as f64 / took.as_secs_f64()
}

/// The Python package's warm pool (`Sandbox(config, pool=True).execute`), if the package is
/// installed for `python` (`make python`), 5 ms between requests.
fn python_api(runs: usize, python: &str, base: Duration) {
    let script = format!(
        "import time\nfrom pysandbox import Sandbox, SandboxConfig\n\
         with Sandbox(SandboxConfig(preset='stdlib', python={python:?}), pool=True, workers=1) as s:\n\
         \x20   t = []\n\
         \x20   for i in range({n}):\n\
         \x20       time.sleep(0.005)\n\
         \x20       a = time.perf_counter()\n\
         \x20       assert s.execute('print(1+1)').stdout == '2\\n'\n\
         \x20       t.append(time.perf_counter() - a)\n\
         \x20   t = sorted(t[10:])\n\
         \x20   print(t[len(t) // 2], t[int((len(t) - 1) * 0.99)])\n",
        n = runs + 10
    );
    python_row(
        python,
        &script,
        "warm pool from Python, 5 ms apart",
        "the pysandbox package is not installed (make python)",
        base,
    );
}

/// Monty (pydantic-monty, a Rust interpreter for a subset of Python) in its warm worker, if it
/// is installed for `python` (`pip install pydantic-monty`).
fn monty(runs: usize, python: &str, base: Duration) {
    let script = format!(
        "import time\nimport pydantic_monty as pm\nwith pm.Monty() as m:\n    with m.checkout() as w:\n        t = []\n        for i in range({n}):\n            s = time.perf_counter()\n            w.feed_run('1+1')\n            t.append(time.perf_counter() - s)\n        t.sort()\n        print(t[len(t) // 2], t[int((len(t) - 1) * 0.99)])\n",
        n = runs + 10
    );
    python_row(
        python,
        &script,
        "Monty session (a Python subset)",
        "pydantic-monty is not installed",
        base,
    );
}

/// Run a timing script under `python` that prints its p50 and p99 in seconds, and print its row
/// (or why it was skipped: the last line of its errors, or `missing`).
fn python_row(python: &str, script: &str, label: &str, missing: &str, base: Duration) {
    match Command::new(python).args(["-c", script]).output() {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let v: Vec<f64> = text
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if let [p50, p99] = v[..] {
                println!(
                    "{:<34} {:>10.2} {:>10.2} {:>13.3}x",
                    label,
                    p50 * 1e3,
                    p99 * 1e3,
                    p50 / base.as_secs_f64()
                );
            }
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            println!(
                "({label} row skipped: {})",
                err.lines().last().unwrap_or(missing)
            );
        }
        Err(e) => println!("({label} row skipped: {e})"),
    }
}

/// Unique memory (KiB) of `pid` and all its descendants: (Private_Dirty, Private_Clean). The
/// first is what the tree wrote (a further worker adds as much); the second, pages of files
/// (the interpreter, its libraries) that no process outside the tree maps, shared by the workers
/// of a pool.
fn tree_uss_kib(pid: u32) -> (u64, u64) {
    let (mut dirty, mut clean) = (0, 0);
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            for line in text.lines() {
                let kib = || {
                    line.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                if line.starts_with("Private_Dirty:") {
                    dirty += kib();
                } else if line.starts_with("Private_Clean:") {
                    clean += kib();
                }
            }
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                    todo.extend(c.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
                }
            }
        }
    }
    (dirty, clean)
}

/// Where a warm request's time goes when requests are spaced out, at its median and its tail: a
/// traced worker's children report the request phase (read, decode, compile, run, report, on
/// their own clock); the rest of what the caller sees is the hand-offs (the host's write waking
/// the child, the `Done` frame waking the host) and the host's own work.
fn tails(runs: usize, policy: &pysandbox_core::policy::Policy) {
    use pysandbox_core::warm::{Pool, PoolOptions, Request, TRACE_ENV};
    // The worker inherits the variable at its start; nothing else starts a worker meanwhile.
    std::env::set_var(TRACE_ENV, "1");
    let mut opts = PoolOptions::new(pysandbox_binary());
    opts.workers = 1;
    let pool = Pool::new(policy.clone(), opts).expect("start a traced warm worker");
    std::env::remove_var(TRACE_ENV);
    let req = Request::new(None, CODE, None);
    println!();
    println!(
        "a warm request's tail: print(1+1), {runs} requests, traced (tracing adds ~0.1 ms to each), µs"
    );
    println!(
        "{:<22} {:>9} {:>9} {:>12} {:>12} {:>11} {:>11}",
        "spacing", "caller", "p99", "child p50", "child p99", "rest p50", "rest p99"
    );
    for pause in [5, 20] {
        let (mut caller, mut child, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs + 10 {
            std::thread::sleep(Duration::from_millis(pause));
            let start = Instant::now();
            let o = pool.run_request(&req).expect("traced warm run");
            let took = start.elapsed();
            assert_eq!(o.run.stdout, "2\n", "{o:?}");
            let Some(m) = o.trace.iter().find(|m| m.phase.starts_with("the request")) else {
                println!("(the warm children reported no phases: tail table skipped)");
                pool.shutdown();
                return;
            };
            if i >= 10 {
                let own = Duration::from_nanos(m.nanos);
                caller.push(took);
                child.push(own);
                rest.push(took.saturating_sub(own));
            }
        }
        for v in [&mut caller, &mut child, &mut rest] {
            v.sort();
        }
        let us = |v: &[Duration], p| percentile(v, p).as_secs_f64() * 1e6;
        println!(
            "{:<22} {:>9.0} {:>9.0} {:>12.0} {:>12.0} {:>11.0} {:>11.0}",
            format!("{pause} ms apart"),
            us(&caller, 0.5),
            us(&caller, 0.99),
            us(&child, 0.5),
            us(&child, 0.99),
            us(&rest, 0.5),
            us(&rest, 0.99)
        );
    }
    pool.shutdown();
}

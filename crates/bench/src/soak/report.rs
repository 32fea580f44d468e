//! The end of a soak: its figures, and the checks from the host (docs/soak.md).

use super::{cases, host, Log, PathKind, PATHS};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the run left for the report.
pub(super) struct End {
    pub total: usize,
    pub wall: Duration,
    pub log: Log,
    pub server_fds_first: usize,
    pub server_fds_last: usize,
    pub server_rss_last: u64,
    /// The soak's own pid.
    pub me: u32,
    pub before: host::Snapshot,
    pub strays_before: Vec<String>,
    /// The soak's directory (its TMPDIR inside).
    pub dir: PathBuf,
    pub binary: String,
}

/// Mean of the samples taken in the path's first and last `window` requests.
fn first_last(samples: &[(usize, u64)], answered: usize, window: usize) -> (f64, f64) {
    let mean = |keep: &dyn Fn(usize) -> bool| {
        let v: Vec<u64> = samples
            .iter()
            .filter(|(n, _)| keep(*n))
            .map(|(_, r)| *r)
            .collect();
        v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
    };
    let last_from = answered.saturating_sub(window);
    (mean(&|n| n <= window), mean(&|n| n > last_from))
}

struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, name: &str, detail: String) {
        println!("{:<6} {name:<44} {detail}", if ok { "ok" } else { "FAIL" });
        if !ok {
            self.failed.push(name.to_string());
        }
    }
}

/// Print the figures and the checks; the exit status (1 if a check failed).
pub(super) fn report(e: End) -> i32 {
    let End {
        total,
        wall,
        log,
        server_fds_first,
        server_fds_last,
        server_rss_last,
        me,
        before,
        strays_before,
        dir,
        binary: binary_s,
    } = e;
    // The figures.
    println!(
        "\n{:<10} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "path", "requests", "req/s", "mean ms", "p50 ms", "p99 ms"
    );
    for p in PATHS {
        let mut l = log.latencies.get(&p).cloned().unwrap_or_default();
        l.sort();
        if l.is_empty() {
            continue;
        }
        let mean = l.iter().sum::<Duration>() / l.len() as u32;
        println!(
            "{:<10} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            format!("{p:?}").to_lowercase(),
            l.len(),
            l.len() as f64 / wall.as_secs_f64(),
            crate::ms(mean),
            crate::ms(crate::percentile(&l, 0.5)),
            crate::ms(crate::percentile(&l, 0.99)),
        );
    }
    println!(
        "{:<10} {:>8} {:>10.1}   total {:.1} s; by kind: {}; sessions opened: {}; \
         requests sent again (the server had closed an idle connection): {}",
        "all",
        total,
        total as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        log.by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        log.sessions_opened,
        log.reconnects
    );

    // The checks, from the host.
    let mut c = Checks { failed: Vec::new() };
    println!();
    c.check(
        log.wrong.is_empty(),
        "every answer right",
        format!("{} wrong of {total}", log.wrong.len()),
    );
    for w in log.wrong.iter().take(10) {
        println!("         {}", w.chars().take(400).collect::<String>());
    }
    let server_n = log.answered.get(&PathKind::Server).copied().unwrap_or(0);
    let pool_n = log.answered.get(&PathKind::Pool).copied().unwrap_or(0);
    // A thousand, or half of a short run's requests per path.
    let window = 1000.min(server_n.min(pool_n) / 2).max(1);
    let server_self: Vec<(usize, u64)> = log.server_rss.iter().map(|(n, s, _)| (*n, *s)).collect();
    let server_workers: Vec<(usize, u64)> =
        log.server_rss.iter().map(|(n, _, w)| (*n, *w)).collect();
    for (name, samples, n) in [
        ("server RSS", &server_self, server_n),
        ("server warm workers' RSS", &server_workers, server_n),
        ("pool workers' RSS", &log.pool_rss, pool_n),
    ] {
        let (first, last) = first_last(samples, n, window);
        let ratio = last / first.max(1.0);
        // Flat: within a quarter (the allocator's arenas settle in the first thousands).
        c.check(
            ratio <= 1.25,
            &format!("{name} flat"),
            format!(
                "first {window}: {first:.0} KiB, last {window}: {last:.0} KiB, ratio {ratio:.3}"
            ),
        );
    }
    c.check(
        server_fds_last <= server_fds_first,
        "server descriptors",
        format!("{server_fds_first} after warm-up, {server_fds_last} at the end (RSS {server_rss_last} KiB)"),
    );
    // What the runs may leave is torn down by the kernel after the answers: a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut desc, mut strays);
    loop {
        let all = host::processes();
        desc = host::descendants(&all, me)
            .iter()
            .map(|p| host::describe(p))
            .collect::<Vec<_>>();
        strays = host::named(cases::STRAY);
        strays.retain(|s| !strays_before.contains(s));
        if (desc.is_empty() && strays.is_empty()) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(dir.join("policy.toml"));
    let tmp_left: Vec<String> = std::fs::read_dir(dir.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let dir_left: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "tmp")
        .collect();
    let _ = std::fs::remove_dir(dir.join("tmp"));
    let _ = std::fs::remove_dir(&dir);
    let after = host::Snapshot::now(&binary_s);
    let zombies = desc.iter().filter(|d| d.contains("(Z)")).count();
    c.check(
        desc.is_empty(),
        "no process of the soak left",
        format!(
            "{} descendants ({zombies} zombies) {:?}",
            desc.len(),
            &desc[..desc.len().min(5)]
        ),
    );
    c.check(
        strays.is_empty(),
        "no process a run left (setsid, daemon)",
        format!(
            "{} named {}*: {:?}",
            strays.len(),
            cases::STRAY,
            &strays[..strays.len().min(5)]
        ),
    );
    let ours = host::new_in(
        &before.ours.iter().cloned().collect(),
        &after.ours.iter().cloned().collect(),
    );
    c.check(
        ours.is_empty(),
        "no pysandbox or zygote process left",
        format!("{} running {binary_s}: {ours:?}", ours.len()),
    );
    c.check(
        after.fds <= before.fds,
        "soak process descriptors",
        format!("{} before, {} after", before.fds, after.fds),
    );
    let mounts = host::new_in(&before.mounts, &after.mounts);
    c.check(
        mounts.is_empty(),
        "no mount left (host mountinfo)",
        format!("{} new: {mounts:?}", mounts.len()),
    );
    let sysv = host::new_in(&before.sysv, &after.sysv);
    c.check(
        sysv.is_empty(),
        "no SysV object (/proc/sysvipc)",
        format!(
            "{} before, {} after, new: {sysv:?}",
            before.sysv.len(),
            after.sysv.len()
        ),
    );
    // The test suites (`cargo test` of this or another checkout, running alongside) keep
    // their copies of the binary for the nobody caller in /tmp/pysandbox-test-nobody-*: not
    // the soak's, shown apart.
    let (suites, temp): (Vec<String>, Vec<String>) = host::new_in(&before.temp, &after.temp)
        .into_iter()
        .filter(|t| t.contains("pysandbox"))
        .partition(|t| {
            t.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("pysandbox-test-"))
        });
    c.check(
        temp.is_empty() && tmp_left.is_empty() && dir_left.is_empty(),
        "no temp entry (TMPDIR, /tmp, /dev/shm, /var/tmp)",
        format!(
            "TMPDIR: {tmp_left:?}; soak dir: {dir_left:?}; new pysandbox entries: {temp:?} \
             (and {} of the test suites running alongside)",
            suites.len()
        ),
    );
    let cg = host::new_in(&before.cgroups, &after.cgroups);
    c.check(
        cg.is_empty(),
        "no cgroup (/sys/fs/cgroup/**/*pysandbox*)",
        format!("{} before, new: {cg:?}", before.cgroups.len()),
    );
    if c.failed.is_empty() {
        println!("\nsoak passed");
        0
    } else {
        println!("\nsoak FAILED: {}", c.failed.join("; "));
        1
    }
}

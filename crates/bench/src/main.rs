//! `pysandbox-bench [RUNS]`: wall time of `print(1+1)` through `pysandbox run` (cold), side by side
//! with plain `python -I -S -c` and with bubblewrap given equivalent isolation, interleaved so that
//! machine noise hits every row alike. Prints median, p99 and the ratio to plain python.
#![forbid(unsafe_code)]

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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let interp = pysandbox_core::interp::resolve(None).expect("resolving the python interpreter");
    let python = interp.executable.to_string_lossy().into_owned();
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
        for b in &interp.binds {
            cmd.extend([
                s("--ro-bind"),
                b.source.to_string_lossy().into_owned(),
                b.target.to_string_lossy().into_owned(),
            ]);
        }
        cmd.extend([python.clone(), s("-I"), s("-S"), s("-c"), s(CODE)]);
        rows.push(Row {
            name: s("bubblewrap (cold)"),
            cmd,
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
}

//! Every isolation step fails closed, on every path: a test-only switch (`--inject-failure`,
//! `PoolOptions::inject`, `SessionOptions::inject`) makes one step fail, and the run must end as
//! a sandbox error naming that step, with nothing of the code run (host-side evidence: a marker
//! file the code would write is not there), and a warm worker must be replaced.

mod common;

use common::*;
use pysandbox_core::isolate::{steps, Injection, Stage, Step};
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Pool, PoolOptions, Session, SessionOptions, WarmError};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Code that leaves `name` in the allowed directory `dir` (the evidence that it ran).
fn marker_code(dir: &Path, name: &str) -> String {
    format!(
        "open({:?}, 'w').write('ran')\nprint('ran')",
        dir.join(name).to_string_lossy()
    )
}

fn policy(dir: &Path) -> Policy {
    let mut p = Policy::from_toml_str("preset = \"stdlib\"").unwrap();
    p.limits.wall = Duration::from_secs(5);
    p.allow_write.push(dir.to_path_buf());
    p
}

fn switch_name(step: Step) -> String {
    step.name().replace(' ', "_")
}

#[test]
fn cold_runs_fail_closed_at_every_step() {
    let dir = TempDir::new("isolation").writable_by_all();
    let all: Vec<Step> = steps(Stage::ColdJail)
        .chain(steps(Stage::ColdInterpreter))
        .collect();
    assert!(all.len() >= 10, "{all:?}");
    // Control: without the switch the code runs and leaves its marker.
    let ok = Command::new(bin())
        .args([
            "run",
            "--preset",
            "stdlib",
            "--allow-write",
            &dir.str(),
            "-c",
        ])
        .arg(marker_code(dir.path(), "control"))
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(dir.join("control").exists());
    for step in all {
        let name = switch_name(step);
        let out = Command::new(bin())
            .args(["run", "--preset", "stdlib", "--allow-write", &dir.str()])
            .args(["--inject-failure", &name, "-c"])
            .arg(marker_code(dir.path(), &name))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("sandbox setup failed: {}: ", step.name())),
            "{name}: {stderr}"
        );
        assert!(!dir.join(&name).exists(), "{name}: the code ran");
    }
}

#[test]
fn warm_requests_fail_closed_at_every_step_and_the_worker_is_replaced() {
    let dir = TempDir::new("isolation").writable_by_all();
    let all: Vec<Step> = steps(Stage::WarmRequest).collect();
    assert!(all.contains(&Step::Landlock) && all.contains(&Step::IpcNamespace));
    for step in all {
        let name = switch_name(step);
        let mut o = PoolOptions::new(bin());
        o.workers = 1;
        // The worker's first child is fine; its second fails at `step`.
        o.inject = Some(Injection { step, child: 2 });
        let p = Pool::new(policy(dir.path()), o).expect("start the pool");
        let first = p
            .run(&marker_code(dir.path(), &format!("{name}-1")), None)
            .unwrap();
        assert_eq!(first.run.stdout, "ran\n", "{name}: {first:?}");
        let worker = p.worker_pids();
        match p.run(&marker_code(dir.path(), &format!("{name}-2")), None) {
            Err(WarmError::Isolation { step: s, message }) => {
                assert_eq!(s, step.name(), "{message}");
                assert!(message.contains("injected"), "{message}");
            }
            other => panic!("{name}: expected an isolation failure, got {other:?}"),
        }
        assert!(
            !dir.join(&format!("{name}-2")).exists(),
            "{name}: the code ran"
        );
        // Replaced: another worker process serves the next request, and it runs.
        let third = p
            .run(&marker_code(dir.path(), &format!("{name}-3")), None)
            .unwrap();
        assert_eq!(third.run.stdout, "ran\n", "{name}: {third:?}");
        assert_ne!(p.worker_pids(), worker, "{name}: the worker was kept");
    }
}

#[test]
fn sessions_fail_closed_at_every_step() {
    let dir = TempDir::new("isolation").writable_by_all();
    let all: Vec<Step> = steps(Stage::WarmSession).collect();
    assert!(all.contains(&Step::MountNamespace));
    for step in all {
        let name = switch_name(step);
        let mut o = SessionOptions::new(Duration::from_secs(30));
        o.inject = Some(Injection { step, child: 1 });
        let mut s = Session::open_with_options(Path::new(bin()), &policy(dir.path()), o)
            .expect("open the session");
        match s.execute(&marker_code(dir.path(), &name)) {
            Err(WarmError::Isolation { step: got, .. }) => assert_eq!(got, step.name()),
            other => panic!("{name}: expected an isolation failure, got {other:?}"),
        }
        assert!(!dir.join(&name).exists(), "{name}: the code ran");
        assert!(!s.is_open());
    }
    // Control: the same session without the switch runs the code.
    let mut s = Session::open(
        Path::new(bin()),
        &policy(dir.path()),
        Duration::from_secs(30),
    )
    .unwrap();
    let r = s
        .execute(&marker_code(dir.path(), "session-control"))
        .unwrap();
    assert_eq!(r.run.stdout, "ran\n", "{r:?}");
    assert!(dir.join("session-control").exists());
}

//! The command's own start: `pysandbox` has its own `main` in place of std's runtime start
//! (`pysandbox_core::start_process`). What std's start did for it still holds.

mod common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};

/// A reader that goes away (`| head -c 1`) ends the command quietly: SIGPIPE is ignored, the
/// failed write ends it with status 0, not killed by the signal.
#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let mut child = Command::new(bin())
        .args(["run", "-c", "for i in range(2000): print('x' * 100)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    out.read_exact(&mut one).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

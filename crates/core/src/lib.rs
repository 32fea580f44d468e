//! pysandbox-core: runs real CPython inside a Linux sandbox.
//!
//! The launch sequence lives in [`jail`]; the host side that starts a jail, enforces the wall clock
//! and output limits and collects the outcome lives in [`supervisor`]. Every raw syscall is behind a
//! safe wrapper in the private `sys` module, the only place with `unsafe`.

pub mod interp;
pub mod isolate;
pub mod jail;
pub mod judge;
pub mod landlock;
pub mod layers;
mod libview;
pub mod limits;
pub mod mounts;
pub mod outcome;
pub mod packages;
pub mod paths;
pub mod policy;
pub mod protocol;
mod pymarshal;
pub mod run;
pub mod seccomp;
pub mod supervisor;
mod sys;
pub mod warm;

pub use interp::Interpreter;
pub use jail::{JailSpec, Network};
pub use limits::{Limit, Limits};
pub use supervisor::{Captured, Launch, Outcome, OutputMode, Status, Stdin};

/// For a program whose `main` replaces std's runtime start (the `pysandbox` command): what that
/// start does and the program still needs. Descriptors 0, 1 and 2 are made valid (a closed one
/// becomes /dev/null) and `SIGPIPE` is ignored. Call it first.
pub fn start_process() {
    sys::start_process();
}

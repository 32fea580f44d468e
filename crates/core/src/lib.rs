//! pysandbox-core: runs real CPython inside a Linux sandbox.
//!
//! The launch sequence lives in [`jail`]; the host side that starts a jail, enforces the wall clock
//! and output limits and collects the outcome lives in [`supervisor`]. Every raw syscall is behind a
//! safe wrapper in the private `sys` module, the only place with `unsafe`.

//! The zygote's configuration (descriptor 6 of `bootstrap/warm.py`, read by the bootstrap and by
//! the zygote library), built from a resolved policy by `pysandbox worker`.

use super::WarmError;
use crate::isolate::Injection;
use crate::jail::Network;
use crate::landlock::{self, Access};
use crate::limits::Limits;
use crate::mounts::DEV_NODES;
use crate::policy::GuardConfig;
use crate::policy::Resolved;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the zygote library is bound inside a warm worker's jail.
pub const LIBRARY_IN_JAIL: &str = "/.pysandbox/libpysandbox_zygote.so";
/// The library's file name, looked for next to the `pysandbox` binary.
pub const LIBRARY_NAME: &str = "libpysandbox_zygote.so";
/// Overrides where the library is found.
pub const LIBRARY_ENV: &str = "PYSANDBOX_ZYGOTE_LIB";

/// What the zygote does with its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZygoteMode {
    /// Keep a fresh request child ready at all times (a pool's worker).
    Pool,
    /// Fork children only when asked, for sessions.
    Sessions,
}

/// Which request path a child takes once before its request (its first-use costs paid ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WarmUp {
    /// Running code (`pysandbox batch`, `run --warm`, the Rust API).
    #[default]
    Code,
    /// Also the Python package's exec/eval/call with data in and out.
    Api,
}

/// One Landlock rule of the request children: a path inside the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZygoteRule {
    pub path: PathBuf,
    pub access: Access,
    pub is_dir: bool,
}

/// The zygote's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZygoteConfig {
    /// [`crate::protocol::VERSION`]: the library refuses a configuration of another version.
    pub protocol: u32,
    /// The library's path inside the jail (the bootstrap loads it from there).
    pub library: PathBuf,
    /// Keep a request child forked and isolated ahead of its request.
    pub prefork: bool,
    /// Children also warm up the Python package's exec/eval/call path.
    pub api: bool,
    /// Modules imported once by the zygote (an import that fails is skipped).
    pub preload: Vec<String>,
    /// The policy's `preload`, imported by the guard (one that fails refuses the worker); the
    /// library then checks that they leave each request room under its memory limit.
    pub policy_preload: Vec<String>,
    /// The guard's configuration (as JSON text), or none.
    pub guard: Option<GuardConfig>,
    /// Each request's limits (the jail itself runs with wide ones).
    pub limits: Limits,
    /// The jail's filesystem, as Landlock rules for every child (each adds its own `/tmp`).
    pub rules: Vec<ZygoteRule>,
    pub network: Network,
    /// The test-only switch ([`Injection`]).
    pub inject: Option<Injection>,
    /// Children report their phases ([`super::TRACE_ENV`]).
    #[serde(default)]
    pub trace: bool,
    /// The jail added `LD_BIND_NOW=1` to the zygote's environment ([`adds_bind_now`]): the
    /// bootstrap takes it out again before anything else.
    #[serde(default)]
    pub bind_now: bool,
}

/// The variable that makes the dynamic loader resolve every symbol when it loads a library
/// rather than at its first call.
pub const BIND_NOW_ENV: &str = "LD_BIND_NOW";

/// Whether a warm worker's jail starts its interpreter with `LD_BIND_NOW=1` added to the
/// policy's environment `env`: unless `env` names the variable itself. Every symbol of the
/// interpreter and its libraries is then resolved once, in the zygote: with lazy binding each
/// forked child resolved the ones it called first itself, writing the libraries' GOT pages (a
/// page copy each) and walking their symbol tables (~25 page faults and ~60 µs of CPU per run,
/// docs/performance.md). The zygote's bootstrap removes it from the environment before anything
/// runs ([`ZygoteConfig::bind_now`]): the code never sees it.
pub fn adds_bind_now(env: &[(String, String)]) -> bool {
    !env.iter().any(|(k, _)| k == BIND_NOW_ENV)
}

/// The zygote's configuration for a resolved policy.
pub fn zygote_config(
    resolved: &Resolved,
    preload: &[String],
    mode: ZygoteMode,
    warm_up: WarmUp,
    inject: Option<Injection>,
) -> Result<ZygoteConfig, WarmError> {
    let spec = &resolved.spec;
    // Every request gets a fresh tmpfs on /tmp: a bind below it would be gone after the first.
    if let Some(p) = spec
        .read_paths
        .iter()
        .chain(&spec.write_paths)
        .find(|p| p.starts_with("/tmp"))
    {
        return Err(WarmError::Worker(format!(
            "warm mode gives every request a fresh /tmp, so it cannot serve the allowed path \
             {} below it; allow the data from another directory, or run cold",
            p.display()
        )));
    }
    let mut rules = Vec::new();
    let mut rule = |path: &Path, access: Access, is_dir: bool| {
        rules.push(ZygoteRule {
            path: path.to_path_buf(),
            access,
            is_dir,
        });
    };
    // The interpreter's files: one rule per directory holding bound files (in the jail's root
    // such a directory holds nothing else), one per bound directory.
    let mut dirs: Vec<&Path> = Vec::new();
    for b in &spec.interpreter.binds {
        match b.target.parent() {
            _ if b.is_dir => rule(&b.target, Access::ReadExec, true),
            Some(parent) if parent != Path::new("/") => {
                if !dirs.contains(&parent) {
                    dirs.push(parent);
                }
            }
            _ => rule(&b.target, Access::ReadExec, false),
        }
    }
    for d in dirs {
        rule(d, Access::ReadExec, true);
    }
    for d in DEV_NODES {
        rule(Path::new(d), Access::ReadWrite, false);
    }
    for p in &spec.read_paths {
        rule(p, Access::Read, p.is_dir());
    }
    for p in &spec.write_paths {
        rule(p, Access::ReadWrite, p.is_dir());
    }
    landlock::abi().map_err(|e| WarmError::Worker(e.to_string()))?;
    Ok(ZygoteConfig {
        protocol: crate::protocol::VERSION,
        library: PathBuf::from(LIBRARY_IN_JAIL),
        prefork: mode == ZygoteMode::Pool,
        api: warm_up == WarmUp::Api,
        preload: preload.to_vec(),
        policy_preload: resolved.preload.clone(),
        guard: resolved.guard.clone(),
        limits: spec.limits.clone(),
        rules,
        network: spec.network,
        inject,
        trace: std::env::var_os(super::TRACE_ENV).is_some(),
        bind_now: adds_bind_now(&spec.env),
    })
}

/// The zygote library on this host: `$PYSANDBOX_ZYGOTE_LIB`, or next to `binary`.
pub fn find_library(binary: &Path) -> Result<PathBuf, WarmError> {
    let path = match std::env::var_os(LIBRARY_ENV) {
        Some(p) => PathBuf::from(p),
        None => binary.parent().unwrap_or(Path::new(".")).join(LIBRARY_NAME),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(WarmError::Worker(format!(
            "the warm zygote library {} was not found (it is built with the binary: `cargo \
             build --release --workspace` or `make build`; set ${LIBRARY_ENV} to use another)",
            path.display()
        )))
    }
}

//! The options every command that builds a sandbox shares (`PolicyArgs`), in a module of its
//! own: both binaries use it (`pysandbox` and `pysandbox-server`).

use anyhow::Result;
use clap::Args;
use pysandbox_core::isolate::Injection;
use pysandbox_core::limits::{parse_duration, parse_size};
use pysandbox_core::policy::{Policy, PolicyError};
use pysandbox_core::Network;
use std::path::PathBuf;

/// Options every command that builds a sandbox shares: they map onto [`Policy`], and override
/// what a `--policy` file says.
#[derive(Args, Clone)]
pub(crate) struct PolicyArgs {
    /// Policy file (TOML, or JSON if it ends in .json); the flags below override it.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Starting point: default (imports only as features allow), stdlib, full.
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Enable a feature (pysandbox's names: math, stdout, time, ...); repeatable, or comma-separated.
    #[arg(long = "feature", value_name = "NAME", value_delimiter = ',')]
    features: Vec<String>,
    /// Allow a module, or only some of its names: `json`, `math:sqrt,pi`; repeatable.
    #[arg(long = "allow-module", value_name = "MODULE[:NAMES]")]
    modules: Vec<String>,
    /// Import a module before the code (a warm worker: once, for every request); repeatable,
    /// or comma-separated. Only modules the policy allows.
    #[arg(long = "preload", value_name = "MODULE", value_delimiter = ',')]
    preload: Vec<String>,
    /// Code run once after the preloads (a warm worker: before any request) to take first-use
    /// costs, e.g. a plot drawn and closed; its names are dropped.
    #[arg(long, value_name = "CODE")]
    warmup: Option<String>,
    /// Wall-clock limit (e.g. 2s, 250ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
    /// CPU-time limit, rounded up to whole seconds.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    cpu_time: Option<std::time::Duration>,
    /// Address-space limit (e.g. 256M), or `none` (default 250M; 512M with the full preset).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Bytes kept of each of stdout and stderr (e.g. 64K).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_output: Option<u64>,
    /// Processes and threads, the interpreter included (1: no fork, no threads).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    processes: Option<u32>,
    /// Open file descriptors.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(8..))]
    open_files: Option<u32>,
    /// Largest file the code may write.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    file_size: Option<u64>,
    /// Size of the private /tmp.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    tmp_size: Option<u64>,
    /// Python recursion limit of the code.
    #[arg(long, value_name = "N")]
    recursion_limit: Option<u32>,
    /// Make a host path readable (read-only) at the same place inside; repeatable.
    #[arg(long, value_name = "PATH")]
    allow_read: Vec<PathBuf>,
    /// Make a host path writable at the same place inside; repeatable.
    #[arg(long, value_name = "PATH")]
    allow_write: Vec<PathBuf>,
    /// Network: `none` (default) or `host` (the `network` feature implies host).
    #[arg(long, value_name = "MODE", value_parser = ["none", "host"])]
    net: Option<String>,
    /// Allow the code to start programs (the `subprocess` feature).
    #[arg(long)]
    allow_subprocess: bool,
    /// Forward this terminal's standard input to the code (the `stdin` feature).
    #[arg(long)]
    stdin: bool,
    /// Pass an environment variable to the code (nothing of the host's passes otherwise); repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Python interpreter to run (default: $PYSANDBOX_PYTHON, python3.11 or python3 on PATH).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Test-only: make isolation step STEP fail (in a warm worker: in its Nth child). It can
    /// only make a run fail, never weaken one.
    #[arg(long, value_name = "STEP[:N]", hide = true)]
    inject_failure: Option<String>,
}

impl PolicyArgs {
    /// The policy file (if any) with the flags applied on top, validated.
    pub(crate) fn policy(&self) -> Result<Policy, PolicyError> {
        let mut p = match &self.policy {
            Some(f) => Policy::from_file(f)?,
            None => Policy::default(),
        };
        if let Some(preset) = &self.preset {
            p.preset = preset.parse()?;
        }
        for f in &self.features {
            p.enable(f.trim())?;
        }
        if self.allow_subprocess {
            p.enable("subprocess")?;
        }
        if self.stdin {
            p.enable("stdin")?;
        }
        for m in &self.modules {
            p.allow_module_spec(m)?;
        }
        p.preload_modules(&self.preload)?;
        if let Some(w) = &self.warmup {
            p.warmup = Some(w.clone());
        }
        let l = &mut p.limits;
        l.wall = self.timeout.unwrap_or(l.wall);
        l.cpu = self.cpu_time.or(l.cpu);
        if let Some(m) = &self.memory {
            p.memory_pinned = true;
            l.memory = match m.as_str() {
                "none" | "unlimited" => None,
                m => Some(parse_size(m).map_err(|e| PolicyError::Invalid {
                    field: "--memory".into(),
                    value: m.into(),
                    expected: e.to_string(),
                })?),
            };
        }
        l.output = self.max_output.unwrap_or(l.output);
        if let Some(n) = self.processes {
            l.processes = n;
            p.processes_pinned = true;
        }
        l.open_files = self.open_files.unwrap_or(l.open_files);
        l.file_size = self.file_size.unwrap_or(l.file_size);
        l.tmp_size = self.tmp_size.unwrap_or(l.tmp_size);
        p.recursion_limit = self.recursion_limit.or(p.recursion_limit);
        p.allow_read.extend(self.allow_read.iter().cloned());
        p.allow_write.extend(self.allow_write.iter().cloned());
        if let Some(n) = &self.net {
            p.network = Some(if n == "host" {
                Network::Host
            } else {
                Network::None
            });
        }
        for kv in &self.env {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(PolicyError::Invalid {
                    field: "--env".into(),
                    value: kv.clone(),
                    expected: "NAME=VALUE".into(),
                });
            };
            p.env.insert(k.into(), v.into());
        }
        if self.python.is_some() {
            p.python.clone_from(&self.python);
        }
        p.validate()?;
        Ok(p)
    }

    /// The test-only switch, parsed.
    // Not used by the server's binary, which includes this module too.
    #[allow(dead_code)]
    pub(crate) fn injection(&self) -> Result<Option<Injection>> {
        self.inject_failure
            .as_deref()
            .map(Injection::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--inject-failure: {e}"))
    }
}

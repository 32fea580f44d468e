//! The layer matrix's test-only switch: turn isolation layers off, to learn which attack each
//! layer stops alone and where layers overlap (`crates/cli/tests/layer_matrix.rs`, the table in
//! SECURITY.md).
//!
//! It weakens a sandbox, so it is guarded twice: the hidden `--disable-layer` flag of `pysandbox
//! run` is refused (exit 2) unless the operator also set [`GUARD_ENV`]`=1`, and the supervisor
//! itself refuses to start a jail with a layer off without that variable ([`check_guard`]). No
//! policy field, HTTP body or Python API carries it: only the command line of `pysandbox run`
//! (the cold path) does. Every layer not named stays on, and the supervisor's own wall clock
//! always applies, so a run still ends.
//!
//! What "off" means for each layer:
//! - `mount_view`: no minimal root and no `pivot_root`: the code sees the host's filesystem
//!   (through a private copy of its mount tree, so nothing propagates back), with only a fresh
//!   private `/tmp` (its working directory) mounted over the host's;
//! - `landlock`, `seccomp`: the jail skips that step;
//! - `rlimits`: the interpreter keeps the host's resource limits (address space, processes,
//!   open files, file size, CPU);
//! - `net_namespace`, `ipc_namespace`, `pid_namespace`, `uts_namespace`: the jail shares the
//!   host's (the jail's own settings for them, the unix queue limits and the hostname, are
//!   skipped with them).
//!
//! The user namespace cannot be dropped: every other step (mounts, ids, capabilities) is built
//! on it, and without it the code would run with the caller's own credentials on the host.

use crate::isolate::Step;

/// Set by the operator to allow [`Layers`] other than none.
pub const GUARD_ENV: &str = "PYSANDBOX_TESTING_DISABLE_LAYERS";

/// One layer the switch can turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    MountView,
    Landlock,
    Seccomp,
    Rlimits,
    NetNamespace,
    IpcNamespace,
    PidNamespace,
    UtsNamespace,
}

impl Layer {
    pub const ALL: [Layer; 8] = [
        Layer::MountView,
        Layer::Landlock,
        Layer::Seccomp,
        Layer::Rlimits,
        Layer::NetNamespace,
        Layer::IpcNamespace,
        Layer::PidNamespace,
        Layer::UtsNamespace,
    ];

    /// The name the switch takes.
    pub fn name(self) -> &'static str {
        match self {
            Layer::MountView => "mount_view",
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
            Layer::Rlimits => "rlimits",
            Layer::NetNamespace => "net_namespace",
            Layer::IpcNamespace => "ipc_namespace",
            Layer::PidNamespace => "pid_namespace",
            Layer::UtsNamespace => "uts_namespace",
        }
    }

    pub fn parse(name: &str) -> Result<Layer, String> {
        Layer::ALL
            .into_iter()
            .find(|l| l.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Layer::ALL.iter().map(|l| l.name()).collect();
                format!(
                    "unknown layer '{name}': expected one of {}",
                    names.join(", ")
                )
            })
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The layers turned off (none by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layers(u16);

impl Layers {
    pub const NONE: Layers = Layers(0);

    pub fn off(self, layer: Layer) -> bool {
        self.0 & layer.bit() != 0
    }

    pub fn with(self, layer: Layer) -> Layers {
        Layers(self.0 | layer.bit())
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the layers off, comma-separated.
    pub fn names(self) -> String {
        let names: Vec<_> = Layer::ALL
            .iter()
            .filter(|l| self.off(**l))
            .map(|l| l.name())
            .collect();
        names.join(",")
    }

    /// Whether a jail or interpreter step is skipped because its layer is off. The mount view
    /// is not skipped but replaced (see [`crate::mounts::host_view`]).
    pub fn skips(self, step: Step) -> bool {
        match step {
            Step::Landlock => self.off(Layer::Landlock),
            Step::Seccomp => self.off(Layer::Seccomp),
            Step::Rlimits => self.off(Layer::Rlimits),
            Step::Hostname => self.off(Layer::UtsNamespace),
            Step::NetworkLimits => self.off(Layer::NetNamespace),
            _ => false,
        }
    }
}

/// Refuse `layers` unless the operator set [`GUARD_ENV`]`=1` in this process's environment.
pub fn check_guard(layers: Layers) -> Result<(), String> {
    if layers.is_empty() || std::env::var_os(GUARD_ENV).is_some_and(|v| v == "1") {
        return Ok(());
    }
    Err(format!(
        "isolation layers disabled ({}) without {GUARD_ENV}=1: this test-only switch weakens \
         the sandbox and is refused",
        layers.names()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_steps_map() {
        for l in Layer::ALL {
            assert_eq!(Layer::parse(l.name()), Ok(l));
        }
        assert!(Layer::parse("user_namespace")
            .unwrap_err()
            .contains("expected one of"));
        let l = Layers::NONE.with(Layer::Seccomp).with(Layer::UtsNamespace);
        assert_eq!(l.names(), "seccomp,uts_namespace");
        assert!(l.skips(Step::Seccomp) && l.skips(Step::Hostname));
        assert!(!l.skips(Step::Landlock) && !l.skips(Step::Ids));
        assert!(!Layers::NONE.skips(Step::Seccomp));
    }
}

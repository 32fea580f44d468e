//! PLACEHOLDER until the interp module lands.
use std::path::{Path, PathBuf};
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Interpreter {
    pub executable: PathBuf,
    pub version: String,
    pub binds: Vec<Bind>,
    #[serde(default)]
    pub site_packages: Vec<PathBuf>,
}
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub is_dir: bool,
}
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("x")]
    X,
}
pub fn resolve(_p: Option<&Path>) -> Result<Interpreter, InterpError> {
    let b = |s: &str, d| Bind {
        source: std::fs::canonicalize(s).unwrap(),
        target: s.into(),
        is_dir: d,
    };
    Ok(Interpreter {
        executable: "/root/.pyenv/versions/3.11.7/bin/python3.11".into(),
        version: "3.11.7".into(),
        site_packages: vec!["/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages".into()],
        binds: vec![
            b("/root/.pyenv/versions/3.11.7/bin/python3.11", false),
            b("/root/.pyenv/versions/3.11.7/lib/python3.11", true),
            b(
                "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0",
                false,
            ),
            b("/lib/x86_64-linux-gnu/libc.so.6", false),
            b("/lib/x86_64-linux-gnu/libm.so.6", false),
            b("/lib64/ld-linux-x86-64.so.2", false),
        ],
    })
}

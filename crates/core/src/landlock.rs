//! PLACEHOLDER until the landlock module lands.
use std::path::PathBuf;
pub enum Access {
    Read,
    ReadExec,
    ReadWrite,
}
pub struct LandlockRules {
    pub paths: Vec<(PathBuf, Access)>,
    pub scope_signals: bool,
    pub scope_abstract_unix: bool,
    pub restrict_tcp: bool,
}
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("x")]
    X,
}
pub struct LandlockStatus;
pub fn abi() -> Result<u32, LandlockError> {
    Ok(7)
}
pub fn apply(_r: &LandlockRules) -> Result<LandlockStatus, LandlockError> {
    Ok(LandlockStatus)
}

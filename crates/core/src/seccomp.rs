//! PLACEHOLDER until the seccomp module lands (helper writing it).
use std::os::fd::{BorrowedFd, OwnedFd};
pub struct SeccompOptions {
    pub exec: ExecPolicy,
    pub network: bool,
}
pub enum ExecPolicy {
    Deny,
    FirstOnly,
    Allow,
}
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("x")]
    X,
}
pub fn install(_o: &SeccompOptions) -> Result<Option<OwnedFd>, SeccompError> {
    Ok(None)
}
pub fn approve_first_exec(_l: OwnedFd, _c: BorrowedFd) -> Result<bool, SeccompError> {
    Ok(true)
}

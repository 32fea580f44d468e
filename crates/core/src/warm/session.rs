//! A notebook-like session: one child of a worker of its own keeps its state between calls.

use super::channel::ChildChannel;
use super::worker::{Served, Worker};
use super::{Request, WarmError, WarmOutcome, WarmUp, ZygoteMode};
use crate::policy::Policy;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// A notebook-like session: one isolated child keeps its state between calls.
pub struct Session {
    worker: Option<Worker>,
    child: Option<ChildChannel>,
}

impl Session {
    /// Open a session (a worker of its own); the child ends after `idle` without calls.
    pub fn open(binary: &Path, policy: &Policy, idle: Duration) -> Result<Session, WarmError> {
        Session::open_with(binary, policy, idle, WarmUp::Code)
    }

    /// [`Session::open`] with the request path to warm up.
    pub fn open_with(
        binary: &Path,
        policy: &Policy,
        idle: Duration,
        warm_up: WarmUp,
    ) -> Result<Session, WarmError> {
        let mut worker = Worker::start_mode(binary, policy, ZygoteMode::Sessions, warm_up)?;
        worker
            .tell(&json!({"op": "session", "idle": idle.as_secs_f64()}))
            .map_err(|e| WarmError::Worker(format!("asking for a session: {e}")))?;
        let child = worker.next_child(true)?;
        Ok(Session {
            worker: Some(worker),
            child: Some(child),
        })
    }

    /// Run `code` in the session. A limit tripped ends the session.
    pub fn execute(&mut self, code: &str) -> Result<WarmOutcome, WarmError> {
        self.execute_request(&Request::code(code))
    }

    /// [`Session::execute`] with a whole request.
    pub fn execute_request(&mut self, req: &Request) -> Result<WarmOutcome, WarmError> {
        let (Some(w), Some(ch)) = (self.worker.as_mut(), self.child.as_ref()) else {
            return Err(WarmError::SessionEnded("closed".into()));
        };
        match w.serve(ch, req) {
            Ok(Served::Done(o)) => {
                if o.ended {
                    self.close();
                }
                Ok(o)
            }
            Ok(Served::Idle) => {
                self.close();
                Err(WarmError::SessionEnded("idle timeout".into()))
            }
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.worker.is_some()
    }

    pub fn close(&mut self) {
        self.child = None;
        if let Some(w) = self.worker.take() {
            w.stop();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

//! The sessions of a `pysandbox batch`: lines naming the same `"session"` run in input order in
//! one warm session (`pysandbox_core::warm::Session`), opened at the name's first line and
//! closed at the end of the batch. A tripped limit ends a session as it does in the API; later
//! lines of that session get an error answer.

use crate::batch::error_line;
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{Request, Session, WarmError};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One line of a session, waiting for its turn.
pub struct Line {
    pub id: Value,
    pub req: Request,
}

enum State {
    /// Not opened yet: the name's first line opens it.
    New,
    /// Boxed: a session is much larger than the other states.
    Open(Box<Session>),
    /// Ended (why); its later lines get an error answer.
    Ended(String),
}

#[derive(Default)]
struct Slot {
    /// Lines queued in input order, not yet run.
    queue: VecDeque<Line>,
    /// A thread is running this session's lines; it takes the queue in order until it is empty.
    driving: bool,
    /// Held only by the driving thread, while it runs a line.
    state: Arc<Mutex<Option<State>>>,
}

/// The sessions named so far in a batch.
pub struct Sessions<'a> {
    binary: &'a Path,
    policy: &'a Policy,
    idle: Duration,
    by_name: Mutex<HashMap<String, Slot>>,
}

/// An answer line, and whether it counts as a failure (the batch's exit status).
pub struct Answer {
    pub line: Value,
    pub failed: bool,
}

impl<'a> Sessions<'a> {
    pub fn new(binary: &'a Path, policy: &'a Policy, idle: Duration) -> Sessions<'a> {
        Sessions {
            binary,
            policy,
            idle,
            by_name: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.by_name.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `line` for session `name`. Call it in input order (while holding the input). Returns
    /// true when the caller must now [`Sessions::drive`] the session: no other thread is.
    pub fn enqueue(&self, name: &str, line: Line) -> bool {
        let mut all = self.lock();
        let slot = all.entry(name.to_string()).or_insert_with(|| Slot {
            state: Arc::new(Mutex::new(Some(State::New))),
            ..Slot::default()
        });
        slot.queue.push_back(line);
        !std::mem::replace(&mut slot.driving, true)
    }

    /// Run the queued lines of session `name` in order, handing each answer to `answer`, until
    /// its queue is empty.
    pub fn drive(&self, name: &str, answer: &mut dyn FnMut(Answer)) {
        loop {
            let (line, state) = {
                let mut all = self.lock();
                let Some(slot) = all.get_mut(name) else {
                    return;
                };
                match slot.queue.pop_front() {
                    Some(line) => (line, Arc::clone(&slot.state)),
                    None => {
                        slot.driving = false;
                        return;
                    }
                }
            };
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            answer(self.call(&mut state, line));
        }
    }

    /// One line in its session, opening the session at its first line.
    fn call(&self, state: &mut Option<State>, line: Line) -> Answer {
        let id = line.id;
        if matches!(state, Some(State::New)) {
            *state = Some(match Session::open(self.binary, self.policy, self.idle) {
                Ok(s) => State::Open(Box::new(s)),
                Err(e) => {
                    let message = format!("opening the session: {e}");
                    *state = Some(State::Ended(format!("it could not be opened ({e})")));
                    return Answer {
                        line: error_line(id, e.kind(), message),
                        failed: true,
                    };
                }
            });
        }
        let session = match state {
            Some(State::Open(s)) => s,
            Some(State::Ended(why)) => {
                let e = WarmError::SessionEnded(why.clone());
                return Answer {
                    line: error_line(id, e.kind(), e.to_string()),
                    failed: true,
                };
            }
            _ => unreachable!("opened above"),
        };
        let result = session.execute_request(&line.req);
        let open = session.is_open();
        let (answer, why) = match result {
            Ok(mut o) => {
                o.id = id.clone();
                let why = match (o.run.limit, o.run.signal) {
                    (Some(l), _) => format!("the {} limit was reached at line {id}", l.name()),
                    (None, Some(sig)) => format!("it was killed by signal {sig} at line {id}"),
                    (None, None) => format!("its process ended at line {id}"),
                };
                let mut v = serde_json::to_value(&o).unwrap_or_default();
                v["id"] = id;
                (
                    Answer {
                        line: v,
                        failed: false,
                    },
                    why,
                )
            }
            Err(e) => {
                let why = match &e {
                    WarmError::SessionEnded(why) => format!("{why} (at line {id})"),
                    e => format!("{e} (at line {id})"),
                };
                let line = error_line(id, e.kind(), e.to_string());
                (Answer { line, failed: true }, why)
            }
        };
        let mut answer = answer;
        if !open {
            // This call ended the session.
            answer.line["ended"] = json!(true);
            session.close();
            *state = Some(State::Ended(why));
        }
        answer
    }

    /// Close every session still open (the end of the batch).
    pub fn close_all(&self) {
        let states: Vec<_> = self.lock().values().map(|s| Arc::clone(&s.state)).collect();
        for state in states {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(State::Open(mut s)) = state.take() {
                s.close();
            }
        }
    }
}

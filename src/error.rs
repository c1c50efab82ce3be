//! How a command fails: the one error `main` prints, and its exit code.
//!
//! Commands return `anyhow::Result<Report>`. Most failures are plain anyhow errors
//! (exit code 1, printed with their causes) or a [`Refusal`] somewhere in them
//! (exit code 3, printed as it reads, with its hint). A command that made a report
//! before it failed (`verify`'s problems, `integrate`'s conflicts, `run`'s summary)
//! returns a [`CommandError`] that carries it, and `main` prints that report first,
//! to stdout as on success, then the error on stderr. No command prints its own
//! failure.

use std::fmt;

use crate::board::Refusal;
use crate::output::Report;

/// What a command's exit code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// 0: done.
    Done,
    /// 1: bad input or a failure of git; nothing was written.
    Error,
    /// 2: the argument parser's usage error.
    Usage,
    /// 3: refused by the board ("not now").
    Refused,
    /// 4: nothing left for this instance's role ("stop").
    NothingLeft,
}

impl ExitKind {
    /// The process's exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Done => 0,
            ExitKind::Error => 1,
            ExitKind::Usage => 2,
            ExitKind::Refused => 3,
            ExitKind::NothingLeft => 4,
        }
    }
}

/// A failed command: its error, and the report to print before it, if any.
#[derive(Debug)]
pub struct CommandError {
    error: anyhow::Error,
    report: Option<Report>,
}

impl CommandError {
    /// A failure with nothing to print but the error.
    pub fn new(error: impl Into<anyhow::Error>) -> Self {
        CommandError {
            error: error.into(),
            report: None,
        }
    }

    /// The same failure, with the report the command made before it failed.
    pub fn with_report(mut self, report: Report) -> Self {
        self.report = Some(report);
        self
    }

    fn refusal(&self) -> Option<&Refusal> {
        self.error.downcast_ref::<Refusal>()
    }

    /// Refused by the board (a [`Refusal`]), or an error.
    pub fn kind(&self) -> ExitKind {
        match self.refusal() {
            Some(Refusal::NothingLeft { .. }) => ExitKind::NothingLeft,
            Some(_) => ExitKind::Refused,
            None => ExitKind::Error,
        }
    }

    /// The `error:` line: a refusal as it reads, anything else with its causes.
    pub fn message(&self) -> String {
        match self.refusal() {
            Some(r) => r.to_string(),
            None => format!("{:#}", self.error),
        }
    }

    /// The next command to try, when there is one.
    pub fn hint(&self) -> Option<String> {
        self.refusal().and_then(Refusal::hint)
    }

    /// The report to print before the error.
    pub fn report(&self) -> Option<&Report> {
        self.report.as_ref()
    }
}

/// Any error a command returned: a [`CommandError`] it made (possibly deep in a
/// helper such as `run::conclude`) as it is, anything else without a report.
impl From<anyhow::Error> for CommandError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<CommandError>() {
            Ok(c) => c,
            Err(e) => CommandError::new(e),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for CommandError {}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn an_error_is_exit_1_with_its_causes_and_no_hint() {
        let e = CommandError::from(
            Err::<(), _>(anyhow::anyhow!("disk full"))
                .context("writing x")
                .expect_err("an error"),
        );
        assert_eq!(e.kind(), ExitKind::Error);
        assert_eq!(e.kind().code(), 1);
        assert_eq!(e.message(), "writing x: disk full");
        assert_eq!(e.hint(), None);
        assert!(e.report().is_none());
    }

    #[test]
    fn a_refusal_is_exit_3_as_it_reads_with_its_hint() {
        let r = Refusal::NothingReady {
            waiting: 1,
            held: 2,
        };
        let e = CommandError::from(anyhow::Error::new(r.clone()));
        assert_eq!(e.kind(), ExitKind::Refused);
        assert_eq!(e.kind().code(), 3);
        assert_eq!(e.message(), r.to_string());
        assert_eq!(e.hint(), r.hint());
    }

    #[test]
    fn a_report_survives_the_trip_through_anyhow() {
        let e = CommandError::new(Refusal::Conflicts { files: 2 })
            .with_report(Report::new("the report", serde_json::json!({"n": 2})));
        let through: anyhow::Error = e.into();
        let back = CommandError::from(through);
        assert_eq!(back.kind(), ExitKind::Refused);
        assert_eq!(back.report().map(|r| r.text.as_str()), Some("the report"));
        assert_eq!(ExitKind::Done.code(), 0);
        assert_eq!(ExitKind::Usage.code(), 2);
    }
}

//! The only module that writes to stdout and stderr.
//!
//! stdout carries data (text or `--json`); warnings, hints and errors go to stderr.
//! Text output is scrubbed of control characters, so a title carrying ANSI escapes
//! or carriage returns prints as harmless text.

use std::io::{self, Write};

use serde_json::Value;

/// What a command produced: a text for people and a JSON value for scripts.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub json: Value,
    /// Print `json` (an array) as JSON lines, one element per line.
    pub lines: bool,
    /// JSON lines printed as they are (already JSON, as stored), after `json`'s.
    pub raw_lines: Vec<String>,
}

impl Report {
    /// A report with one JSON value.
    pub fn new(text: impl Into<String>, json: Value) -> Self {
        Report {
            text: text.into(),
            json,
            lines: false,
            raw_lines: vec![],
        }
    }
}

/// Replaces control characters other than newline and tab, so nothing printed can
/// move the cursor, change colours or rewrite a line.
/// Invisible and direction-changing characters are written as escapes.
pub fn scrub(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    crate::text::escape_invisible(&s)
}

/// Prints a report; a closed pipe (`mara log | head`) is not an error.
pub fn print(report: &Report, json: bool) -> io::Result<()> {
    // Buffered, and flushed once at the end: std's stdout flushes at every
    // newline, one write(2) per line, which made `mara log --json` of 100,000
    // events a third slower than `git log` printing the same lines.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    if json {
        match (&report.json, report.lines) {
            (Value::Array(items), true) => {
                for item in items {
                    writeln!(out, "{item}")?;
                }
            }
            (v, _) => writeln!(out, "{v}")?,
        }
        for line in &report.raw_lines {
            writeln!(out, "{line}")?;
        }
    } else if !report.text.is_empty() {
        let text = scrub(&report.text);
        if text.ends_with('\n') {
            write!(out, "{text}")?;
        } else {
            writeln!(out, "{text}")?;
        }
    }
    out.flush()
}

/// Whether stdout is a terminal. Text for a terminal may cut long messages to a
/// line; text for a pipe or a file (an agent reading the channel) never does.
pub fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    io::stdout().is_terminal()
}

/// How many characters of a message to show: all of them (`None`) unless stdout
/// is a terminal and `full` was not asked for.
pub fn message_width(full: bool, terminal_width: usize) -> Option<usize> {
    (!full && stdout_is_terminal()).then_some(terminal_width)
}

/// A warning on stderr.
pub fn warn(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "warning: {}", scrub(msg));
}

/// An error, and optionally a hint naming the next command, on stderr.
pub fn error(msg: &str, hint: Option<&str>) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "error: {}", scrub(msg));
    if let Some(h) = hint {
        let _ = writeln!(err, "hint: {}", scrub(h));
    }
}

/// A usage error as clap renders it, on stderr. clap echoes the offending value
/// whole; a word over 100 characters is cut to its start, so a 10,000-character
/// id does not flood the terminal or an agent's context.
pub fn usage_error(text: &str) {
    let cut: Vec<String> = text
        .split(' ')
        .map(|w| {
            let n = w.chars().count();
            if n <= 100 {
                w.to_owned()
            } else {
                format!(
                    "{}… ({n} characters)",
                    w.chars().take(64).collect::<String>()
                )
            }
        })
        .collect();
    let _ = write!(io::stderr().lock(), "{}", scrub(&cut.join(" ")));
}

/// A progress line on stderr (the demo's narration).
pub fn progress(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "{}", scrub(msg));
}

/// Redraws the one-line progress display on the terminal.
pub fn progress_line(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = write!(err, "\r\x1b[K{}", scrub(msg));
    let _ = err.flush();
}

/// Clears the progress line, if one is shown.
pub fn progress_clear(enabled: bool) {
    if enabled {
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}

/// One JSON value on its own line on stdout, flushed (the MCP stdio transport).
pub fn json_line(v: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()
}

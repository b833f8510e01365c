//! Text or JSON output, chosen once per invocation.

use std::io::{self, Write};

use crate::error::CliError;

/// Where and how a command prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON.
    pub json: bool,
    /// Pretty-print the JSON.
    pub pretty: bool,
}

impl Output {
    /// Output in the given mode.
    pub fn new(json: bool, pretty: bool) -> Output {
        Output { json, pretty }
    }

    /// Prints a JSON value on stdout, pretty or compact.
    pub fn json(&self, v: &serde_json::Value) -> Result<(), CliError> {
        let mut stdout = io::stdout().lock();
        let text = if self.pretty {
            format!("{v:#}")
        } else {
            v.to_string()
        };
        writeln!(stdout, "{text}")?;
        Ok(())
    }

    /// Writes text on stdout.
    pub fn text(&self, s: &str) -> Result<(), CliError> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(s.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }
}

//! CLI errors: an exit code from the contract, a message chain and an optional hint. The
//! reporter prints `error: …`, then `caused by: …` lines, then `hint: …`.

use std::fmt::{self, Write as _};

use crabbox_api::ExitStatus;

/// An error that knows its exit code and what to tell the user.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(status: ExitStatus, error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: status.code(),
            error: error.into(),
            hint: None,
        }
    }

    pub fn msg(status: ExitStatus, message: impl fmt::Display) -> Self {
        Self::new(status, anyhow::anyhow!("{message}"))
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The full report as printed on stderr.
    pub fn report(&self) -> String {
        let mut out = format!("error: {}\n", self.error);
        for cause in self.error.chain().skip(1) {
            let _ = writeln!(out, "caused by: {cause}");
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "hint: {hint}");
        }
        out
    }
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        Self {
            code: ExitStatus::Failure.code(),
            error,
            hint: None,
        }
    }
}

/// Result alias for commands.
pub type CliResult<T = u8> = Result<T, CliError>;

/// Attaches an exit status to any error.
pub trait WithStatus<T> {
    fn status(self, status: ExitStatus) -> Result<T, CliError>;
}

impl<T, E: Into<anyhow::Error>> WithStatus<T> for Result<T, E> {
    fn status(self, status: ExitStatus) -> Result<T, CliError> {
        self.map_err(|e| CliError::new(status, e))
    }
}

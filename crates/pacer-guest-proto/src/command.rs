//! The commands the guest accepts on its console: one word a line.

use std::fmt;
use std::str::FromStr;

/// A command for the guest program, written to its console as one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Sweep the whole working set (and the disk); answered by a [`crate::VerifyLine`].
    Verify,
    /// Print a [`crate::StatusLine`] now, out of turn.
    Status,
    /// Stop the memory writer (the working set stays as it is); answered by a status line.
    Pause,
    /// Start the memory writer again at its rate; answered by a status line.
    Resume,
}

impl Command {
    /// Every command, in the order the guest lists them.
    pub const ALL: [Command; 4] = [
        Command::Verify,
        Command::Status,
        Command::Pause,
        Command::Resume,
    ];

    /// The command's word on the wire (`"verify"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Verify => "verify",
            Command::Status => "status",
            Command::Pause => "pause",
            Command::Resume => "resume",
        }
    }

    /// What to write to the guest's console: the word and a newline (`"verify\n"`).
    pub fn line(self) -> &'static str {
        match self {
            Command::Verify => "verify\n",
            Command::Status => "status\n",
            Command::Pause => "pause\n",
            Command::Resume => "resume\n",
        }
    }

    /// Reads one console line (surrounding blanks, `\r` and `\n` ignored); `None` if it
    /// names no command.
    pub fn parse(line: &str) -> Option<Command> {
        let word = line.trim();
        Command::ALL.into_iter().find(|c| c.as_str() == word)
    }

    /// The accepted words for a message, e.g. `verify|status`.
    pub fn choices() -> String {
        Command::ALL.map(Command::as_str).join("|")
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A console line that names no command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCommand(pub String);

impl fmt::Display for UnknownCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown command {:?} ({})", self.0, Command::choices())
    }
}

impl std::error::Error for UnknownCommand {}

impl FromStr for Command {
    type Err = UnknownCommand;

    fn from_str(s: &str) -> Result<Command, UnknownCommand> {
        Command::parse(s).ok_or_else(|| UnknownCommand(s.trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text() {
        assert_eq!(Command::Verify.as_str(), "verify");
        assert_eq!(Command::Verify.line(), "verify\n");
        assert_eq!(Command::Status.to_string(), "status");
        assert_eq!(Command::choices(), "verify|status|pause|resume");
        for c in Command::ALL {
            assert_eq!(c.line(), format!("{c}\n"));
            assert_eq!(Command::parse(c.line()), Some(c));
        }
    }

    #[test]
    fn parsing_lines() {
        assert_eq!(Command::parse("  verify\r\n"), Some(Command::Verify));
        assert_eq!(Command::parse("status"), Some(Command::Status));
        assert_eq!(Command::parse(""), None);
        assert_eq!(Command::parse("VERIFY"), None);
        assert_eq!(Command::parse("verify now"), None);
        let e = "frobnicate\n".parse::<Command>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown command "frobnicate" (verify|status|pause|resume)"#
        );
    }
}

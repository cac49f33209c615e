//! The words that describe a machine to lease, shared by the configuration, the coordinator's
//! lease requests and the cloud providers: canonical classes, the target operating system and
//! its Windows mode, the CPU architecture, and the capacity market with its fallback. Each
//! parses the spellings users type and, when it cannot, names the ones it accepts.

use std::fmt;
use std::time::Duration;

use crate::duration::{format_duration, parse_duration};

/// Canonical machine classes, smallest first (spec/providers.md §1.10).
pub const CLASSES: [&str; 6] = ["tiny", "small", "standard", "fast", "large", "beast"];

/// [`CLASSES`] as a person would list them in an error message.
pub const CLASSES_ACCEPTED: &str = "tiny, small, standard, fast, large or beast";

/// The class a lease gets when none was asked for.
pub const DEFAULT_CLASS: &str = "beast";

/// Whether `class` is one of the canonical classes (exact, lowercase).
pub fn is_canonical_class(class: &str) -> bool {
    CLASSES.contains(&class)
}

/// A word that is not one of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (use {accepted})")]
pub struct UnknownWord {
    /// What the word was meant to be (`architecture`, `capacity market`).
    pub what: &'static str,
    pub value: String,
    /// The accepted spellings, as a person would list them.
    pub accepted: &'static str,
}

fn unknown(what: &'static str, value: &str, accepted: &'static str) -> UnknownWord {
    UnknownWord {
        what,
        value: value.to_owned(),
        accepted,
    }
}

/// The operating system of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetOs {
    Linux,
    Macos,
    Windows,
}

impl TargetOs {
    pub const ACCEPTED: &'static str = "linux, macos or windows";

    /// Reads a target, case-insensitively; `darwin` and `mac` mean macOS.
    pub fn parse(text: &str) -> Result<Self, UnknownWord> {
        match text.trim().to_ascii_lowercase().as_str() {
            "linux" => Ok(Self::Linux),
            "macos" | "darwin" | "mac" => Ok(Self::Macos),
            "windows" => Ok(Self::Windows),
            _ => Err(unknown("target", text, Self::ACCEPTED)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Macos => "macos",
            Self::Windows => "windows",
        }
    }
}

/// How a Windows runner runs commands: natively, or inside WSL2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WindowsMode {
    #[default]
    Normal,
    Wsl2,
}

impl WindowsMode {
    pub const ACCEPTED: &'static str = "normal or wsl2";

    pub fn parse(text: &str) -> Result<Self, UnknownWord> {
        match text.trim().to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "wsl2" | "wsl" => Ok(Self::Wsl2),
            _ => Err(unknown("windows mode", text, Self::ACCEPTED)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Wsl2 => "wsl2",
        }
    }
}

/// The CPU architecture of the runner. The canonical names are the ones EC2 uses; the Go and
/// Debian spellings (`amd64`, `aarch64`) are read too, since old config files carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Architecture {
    #[default]
    X86_64,
    Arm64,
}

impl Architecture {
    pub const ACCEPTED: &'static str = "x86_64 or arm64; amd64 and aarch64 also work";

    pub fn parse(text: &str) -> Result<Self, UnknownWord> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x64" | "x86-64" => Ok(Self::X86_64),
            "arm64" | "aarch64" => Ok(Self::Arm64),
            _ => Err(unknown("architecture", text, Self::ACCEPTED)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }
}

/// How a cloud machine is bought: interruptible spot capacity, or on-demand.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    #[default]
    Spot,
    OnDemand,
}

impl Market {
    pub const ACCEPTED: &'static str = "spot or on-demand";

    pub fn parse(text: &str) -> Result<Self, UnknownWord> {
        match text.trim().to_ascii_lowercase().as_str() {
            "spot" => Ok(Self::Spot),
            "on-demand" | "ondemand" | "on_demand" => Ok(Self::OnDemand),
            _ => Err(unknown("capacity market", text, Self::ACCEPTED)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spot => "spot",
            Self::OnDemand => "on-demand",
        }
    }
}

/// Each word prints as its canonical spelling.
macro_rules! display_as_str {
    ($($word:ty),*) => {$(
        impl fmt::Display for $word {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(TargetOs, WindowsMode, Architecture, Market);

/// What to do when spot capacity is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketFallback {
    /// Fail with the spot refusals.
    None,
    /// Retry the refused machine types on-demand. `after` is the wait the old tool's default
    /// (`on-demand-after-120s`) names; a spot launch is refused or granted at once, so there is
    /// nothing to wait for and it is kept only so the setting reads back as written.
    OnDemand { after: Option<Duration> },
}

impl MarketFallback {
    pub const ACCEPTED: &'static str =
        "none, on-demand or on-demand-after-<duration> like on-demand-after-120s";

    /// The default: `on-demand-after-120s`.
    pub const DEFAULT: Self = Self::OnDemand {
        after: Some(Duration::from_mins(2)),
    };

    pub fn parse(text: &str) -> Result<Self, UnknownWord> {
        let word = text.trim().to_ascii_lowercase();
        let bad = || unknown("capacity fallback", text, Self::ACCEPTED);
        match word.as_str() {
            "none" => Ok(Self::None),
            "on-demand" => Ok(Self::OnDemand { after: None }),
            _ => {
                let wait = word.strip_prefix("on-demand-after-").ok_or_else(bad)?;
                let after = parse_duration(wait).map_err(|_| bad())?;
                Ok(Self::OnDemand { after: Some(after) })
            }
        }
    }

    /// Whether refused spot types are retried on-demand.
    pub fn retries_on_demand(self) -> bool {
        matches!(self, Self::OnDemand { .. })
    }
}

impl Default for MarketFallback {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for MarketFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::OnDemand { after: None } => f.write_str("on-demand"),
            // Whole seconds read as the old default was written (`on-demand-after-120s`).
            Self::OnDemand { after: Some(wait) } if wait.subsec_nanos() == 0 => {
                write!(f, "on-demand-after-{}s", wait.as_secs())
            }
            Self::OnDemand { after: Some(wait) } => {
                write!(f, "on-demand-after-{}", format_duration(*wait))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_exact_and_ordered() {
        assert!(is_canonical_class("beast") && is_canonical_class(DEFAULT_CLASS));
        assert!(!is_canonical_class("Beast") && !is_canonical_class("c7a.large"));
        assert_eq!(CLASSES.first(), Some(&"tiny"));
        let listed = format!("{} or {}", CLASSES[..5].join(", "), CLASSES[5]);
        assert_eq!(CLASSES_ACCEPTED, listed);
    }

    #[test]
    fn spellings_and_errors() {
        assert_eq!(Architecture::parse("AMD64"), Ok(Architecture::X86_64));
        assert_eq!(Architecture::parse("aarch64"), Ok(Architecture::Arm64));
        assert_eq!(
            Architecture::parse("sparc").unwrap_err().to_string(),
            "unknown architecture \"sparc\" (use x86_64 or arm64; amd64 and aarch64 also work)"
        );
        assert_eq!(TargetOs::parse("Darwin"), Ok(TargetOs::Macos));
        assert_eq!(
            TargetOs::parse("beos").unwrap_err().to_string(),
            "unknown target \"beos\" (use linux, macos or windows)"
        );
        assert_eq!(WindowsMode::parse("WSL2"), Ok(WindowsMode::Wsl2));
        assert_eq!(Market::parse("on-demand"), Ok(Market::OnDemand));
        assert_eq!(
            Market::parse("reserved").unwrap_err().to_string(),
            "unknown capacity market \"reserved\" (use spot or on-demand)"
        );
        assert_eq!(
            serde_json::to_string(&Market::OnDemand).unwrap(),
            "\"on-demand\""
        );
    }

    #[test]
    fn fallback_forms_read_back_as_written() {
        for text in [
            "none",
            "on-demand",
            "on-demand-after-120s",
            "on-demand-after-1.5s",
        ] {
            let parsed = MarketFallback::parse(text).unwrap();
            assert!(parsed.retries_on_demand() == (text != "none"), "{text}");
            assert_eq!(MarketFallback::parse(&parsed.to_string()), Ok(parsed));
        }
        assert_eq!(MarketFallback::DEFAULT.to_string(), "on-demand-after-120s");
        assert_eq!(
            MarketFallback::parse("on-demand-after-120s"),
            Ok(MarketFallback::DEFAULT)
        );
        for bad in ["sometimes", "on-demand-after-", "on-demand-after-soon"] {
            assert_eq!(
                MarketFallback::parse(bad).unwrap_err().to_string(),
                format!(
                    "unknown capacity fallback {bad:?} (use none, on-demand or \
                     on-demand-after-<duration> like on-demand-after-120s)"
                )
            );
        }
    }
}

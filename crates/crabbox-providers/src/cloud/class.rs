//! Classes → candidate machine types (spec/providers.md §1.10). A provider describes its
//! machines as a [`Catalog`]: for each platform it supports, the ordered types each canonical
//! class means. [`Catalog::candidates`] applies the shared rules: an explicit type is exactly
//! that type; a canonical class is its ordered list; any other class string that looks like one
//! of the provider's types is that literal type followed by the platform's final fallback.

use std::fmt;

use crabbox_core::machine::{self, Architecture, TargetOs, UnknownWord, WindowsMode};

use crate::ProviderError;

/// The platform a class table is for: the runner's operating system, with the CPU
/// architecture for Linux and the mode for Windows. Windows tables are `x86_64` (EC2 and Azure
/// offer no arm64 Windows Server), so a requested architecture only selects among Linux tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Linux(Architecture),
    Windows(WindowsMode),
    /// macOS tables mix architectures (mac1 is `x86_64`, the rest arm64), so the requested
    /// architecture does not select among them.
    Macos,
}

impl Platform {
    pub fn new(target: TargetOs, windows_mode: WindowsMode, architecture: Architecture) -> Self {
        match target {
            TargetOs::Linux => Self::Linux(architecture),
            TargetOs::Windows => Self::Windows(windows_mode),
            TargetOs::Macos => Self::Macos,
        }
    }

    pub fn target(self) -> TargetOs {
        match self {
            Self::Linux(_) => TargetOs::Linux,
            Self::Windows(_) => TargetOs::Windows,
            Self::Macos => TargetOs::Macos,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Linux(arch) => write!(f, "linux/{arch}"),
            Self::Windows(mode) => write!(f, "windows/{mode}"),
            Self::Macos => f.write_str("macos"),
        }
    }
}

/// One provider's candidates for every canonical class on one platform.
#[derive(Debug)]
pub struct ClassTable {
    pub platform: Platform,
    /// Ordered candidates per class, in the order of [`machine::CLASSES`].
    pub classes: [&'static [&'static str]; 6],
    /// Tried after a literal type given as the class; the last resort of every list.
    pub literal_fallback: &'static [&'static str],
}

impl ClassTable {
    /// The ordered candidates of a canonical class.
    pub fn class(&self, class: &str) -> Option<&'static [&'static str]> {
        let index = machine::CLASSES.iter().position(|known| *known == class)?;
        Some(self.classes[index])
    }
}

/// What a provider knows of one machine type without asking its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineShape {
    pub vcpus: Option<u32>,
    pub memory_gib: Option<u32>,
    pub architecture: Option<Architecture>,
}

/// A provider's machines: its class tables and what it can tell from a type's name.
#[derive(Debug)]
pub struct Catalog {
    pub provider: &'static str,
    pub tables: &'static [ClassTable],
    /// Whether a string is shaped like one of this provider's types, so that a misspelt class
    /// is an error instead of a launch attempt of a type that does not exist.
    pub is_type_name: fn(&str) -> bool,
    /// A type named in error messages, to show the form.
    pub example_type: &'static str,
    pub shape: fn(&str) -> MachineShape,
}

/// What the user asked for.
#[derive(Debug, Clone, Copy)]
pub struct MachineRequest<'a> {
    pub class: &'a str,
    /// `--type` / `serverType`: exactly this type, no fallback.
    pub server_type: Option<&'a str>,
    pub target: TargetOs,
    pub windows_mode: WindowsMode,
    pub architecture: Architecture,
}

/// The types to try for a request, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    /// Never empty.
    pub types: Vec<String>,
    /// The user named the exact type: there is no type fallback, and a failure tells them
    /// to drop `--type` to get one.
    pub explicit: bool,
}

/// A request no provider call could satisfy. These are usage errors (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "unknown class {class:?} (use {}, or one of {provider}'s machine types like {example})",
        machine::CLASSES_ACCEPTED
    )]
    UnknownClass {
        class: String,
        provider: &'static str,
        example: &'static str,
    },
    #[error("--type {0:?} names a class; use --class {0} instead")]
    ClassAsType(String),
    #[error("{value:?} is not one of {provider}'s machine types (they look like {example})")]
    NotAType {
        value: String,
        provider: &'static str,
        example: &'static str,
    },
    #[error("{provider} has no {platform} machines (it offers {offered})")]
    NoPlatform {
        provider: &'static str,
        platform: Platform,
        offered: String,
    },
    #[error(
        "availability zone {zone:?} is in none of the capacity regions ({regions}); list its region in capacity.regions or drop the zone"
    )]
    StrayZone { zone: String, regions: String },
    #[error("no region to launch in; set the provider's region")]
    NoRegion,
    /// A target, Windows mode, architecture or market that is not one of the accepted words,
    /// as a coordinator's lease request may carry.
    #[error(transparent)]
    Word(#[from] UnknownWord),
}

impl From<SpecError> for ProviderError {
    fn from(e: SpecError) -> Self {
        ProviderError::InvalidSpec(e.to_string())
    }
}

impl Catalog {
    /// The candidate types for a request (spec/providers.md §1.10).
    pub fn candidates(&self, request: &MachineRequest<'_>) -> Result<Candidates, SpecError> {
        if let Some(exact) = request.server_type.map(str::trim).filter(|t| !t.is_empty()) {
            return self.exact(exact, request.target);
        }
        let class = request.class.trim();
        let lowered = class.to_ascii_lowercase();
        let platform = Platform::new(request.target, request.windows_mode, request.architecture);
        if machine::is_canonical_class(&lowered) {
            let types = self
                .table(platform)?
                .class(&lowered)
                .expect("a canonical class");
            return Ok(Candidates {
                types: types.iter().map(|t| (*t).to_owned()).collect(),
                explicit: false,
            });
        }
        if !(self.is_type_name)(class) {
            return Err(SpecError::UnknownClass {
                class: class.to_owned(),
                provider: self.provider,
                example: self.example_type,
            });
        }
        // A literal type's own architecture picks the fallback, so `c7g.large` falls back to
        // an arm64 type even when the configured architecture is the x86_64 default.
        let platform = match platform {
            Platform::Linux(requested) => {
                Platform::Linux((self.shape)(class).architecture.unwrap_or(requested))
            }
            other => other,
        };
        let mut types = vec![class.to_owned()];
        for fallback in self.table(platform)?.literal_fallback {
            if !types.iter().any(|t| t == fallback) {
                types.push((*fallback).to_owned());
            }
        }
        Ok(Candidates {
            types,
            explicit: false,
        })
    }

    /// The architecture a candidate runs, for choosing its image: what its name says, else
    /// what was asked for.
    pub fn architecture_of(&self, server_type: &str, requested: Architecture) -> Architecture {
        (self.shape)(server_type).architecture.unwrap_or(requested)
    }

    fn exact(&self, server_type: &str, target: TargetOs) -> Result<Candidates, SpecError> {
        if machine::is_canonical_class(&server_type.to_ascii_lowercase()) {
            return Err(SpecError::ClassAsType(server_type.to_owned()));
        }
        if !(self.is_type_name)(server_type) {
            return Err(SpecError::NotAType {
                value: server_type.to_owned(),
                provider: self.provider,
                example: self.example_type,
            });
        }
        if !self.tables.iter().any(|t| t.platform.target() == target) {
            return Err(self.no_platform(Platform::new(
                target,
                WindowsMode::Normal,
                Architecture::X86_64,
            )));
        }
        Ok(Candidates {
            types: vec![server_type.to_owned()],
            explicit: true,
        })
    }

    fn table(&self, platform: Platform) -> Result<&ClassTable, SpecError> {
        self.tables
            .iter()
            .find(|t| t.platform == platform)
            .ok_or_else(|| self.no_platform(platform))
    }

    fn no_platform(&self, platform: Platform) -> SpecError {
        let offered: Vec<String> = self.tables.iter().map(|t| t.platform.to_string()).collect();
        SpecError::NoPlatform {
            provider: self.provider,
            platform,
            offered: offered.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(server_type: &str) -> MachineShape {
        MachineShape {
            architecture: server_type
                .starts_with("arm")
                .then_some(Architecture::Arm64),
            ..MachineShape::default()
        }
    }

    /// A two-platform catalogue whose types are `<word>.<size>`, to test the rules apart
    /// from any real provider's data.
    const TOY: Catalog = Catalog {
        provider: "toy",
        tables: &[
            ClassTable {
                platform: Platform::Linux(Architecture::X86_64),
                classes: [
                    &["x.1"],
                    &["x.2", "x.1"],
                    &["x.4"],
                    &["x.8"],
                    &["x.16"],
                    &["x.32", "x.16", "x.1"],
                ],
                literal_fallback: &["x.1"],
            },
            ClassTable {
                platform: Platform::Linux(Architecture::Arm64),
                classes: [
                    &["arm.1"],
                    &["arm.2"],
                    &["arm.4"],
                    &["arm.8"],
                    &["arm.16"],
                    &["arm.16"],
                ],
                literal_fallback: &["arm.1"],
            },
        ],
        is_type_name: |s| s.contains('.') && !s.contains(' '),
        example_type: "x.8",
        shape,
    };

    fn request(class: &str) -> MachineRequest<'_> {
        MachineRequest {
            class,
            server_type: None,
            target: TargetOs::Linux,
            windows_mode: WindowsMode::Normal,
            architecture: Architecture::X86_64,
        }
    }

    fn types(result: Result<Candidates, SpecError>) -> Vec<String> {
        result.unwrap().types
    }

    #[test]
    fn a_canonical_class_is_its_ordered_list() {
        assert_eq!(
            types(TOY.candidates(&request("beast"))),
            ["x.32", "x.16", "x.1"]
        );
        assert_eq!(types(TOY.candidates(&request(" Small "))), ["x.2", "x.1"]);
        let arm = MachineRequest {
            architecture: Architecture::Arm64,
            ..request("beast")
        };
        assert_eq!(types(TOY.candidates(&arm)), ["arm.16"]);
    }

    #[test]
    fn an_explicit_type_is_exactly_that_type() {
        let exact = MachineRequest {
            server_type: Some("x.99"),
            ..request("beast")
        };
        assert_eq!(
            TOY.candidates(&exact),
            Ok(Candidates {
                types: vec!["x.99".into()],
                explicit: true
            })
        );
        let class = MachineRequest {
            server_type: Some("Beast"),
            ..request("small")
        };
        assert_eq!(
            TOY.candidates(&class).unwrap_err().to_string(),
            "--type \"Beast\" names a class; use --class Beast instead"
        );
        let junk = MachineRequest {
            server_type: Some("big one"),
            ..request("small")
        };
        assert_eq!(
            TOY.candidates(&junk).unwrap_err().to_string(),
            "\"big one\" is not one of toy's machine types (they look like x.8)"
        );
    }

    #[test]
    fn a_literal_type_as_class_gets_the_final_fallback_of_its_architecture() {
        assert_eq!(types(TOY.candidates(&request("x.7"))), ["x.7", "x.1"]);
        assert_eq!(types(TOY.candidates(&request("x.1"))), ["x.1"]);
        assert_eq!(types(TOY.candidates(&request("arm.3"))), ["arm.3", "arm.1"]);
    }

    #[test]
    fn unknown_classes_and_platforms_name_what_works() {
        assert_eq!(
            TOY.candidates(&request("beats")).unwrap_err().to_string(),
            "unknown class \"beats\" (use tiny, small, standard, fast, large or beast, or one of \
             toy's machine types like x.8)"
        );
        let windows = MachineRequest {
            target: TargetOs::Windows,
            ..request("beast")
        };
        let error = TOY.candidates(&windows).unwrap_err();
        assert_eq!(
            error.to_string(),
            "toy has no windows/normal machines (it offers linux/x86_64, linux/arm64)"
        );
        assert!(matches!(
            ProviderError::from(error),
            ProviderError::InvalidSpec(_)
        ));
        let exact_windows = MachineRequest {
            server_type: Some("x.2"),
            ..windows
        };
        assert!(matches!(
            TOY.candidates(&exact_windows),
            Err(SpecError::NoPlatform { .. })
        ));
        // Words from a lease request convert with `?` and read as usage errors.
        let word = SpecError::from(Architecture::parse("sparc").unwrap_err());
        assert_eq!(
            ProviderError::from(word).to_string(),
            "invalid lease request: unknown architecture \"sparc\" (use x86_64 or arm64; amd64 \
             and aarch64 also work)"
        );
    }
}

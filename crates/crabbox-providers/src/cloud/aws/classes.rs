//! EC2 instance types per class (spec/providers.md §2.2), as the old tool ordered them: the
//! preferred families first (AMD, then Intel, then general purpose, then memory optimised),
//! then smaller sizes, then one burstable type that nearly every account can launch.

use crabbox_core::machine::{Architecture, WindowsMode};

use super::shape;
use crate::cloud::class::{Catalog, ClassTable, Platform};

/// Every EC2 Mac type, Apple silicon first; `mac1.metal` is the one Intel Mac.
const MACOS: &[&str] = &[
    "mac2.metal",
    "mac2-m2.metal",
    "mac2-m2pro.metal",
    "mac-m4.metal",
    "mac-m4pro.metal",
    "mac-m4max.metal",
    "mac2-m1ultra.metal",
    "mac-m3ultra.metal",
    "mac1.metal",
];

/// Large and beast are the same on arm64: Graviton tops out at 64 vCPUs in these families.
const ARM64_LARGE: &[&str] = &[
    "c7g.16xlarge",
    "m7g.16xlarge",
    "r7g.16xlarge",
    "c7g.12xlarge",
    "t4g.small",
];

const TABLES: &[ClassTable] = &[
    ClassTable {
        platform: Platform::Linux(Architecture::X86_64),
        classes: [
            &[
                "m7a.large",
                "m7i.large",
                "c7a.xlarge",
                "c7i.xlarge",
                "t3.small",
            ],
            &[
                "c7a.2xlarge",
                "c7i.2xlarge",
                "m7a.xlarge",
                "m7i.xlarge",
                "c7a.xlarge",
                "t3.small",
            ],
            &[
                "c7a.8xlarge",
                "c7i.8xlarge",
                "m7a.8xlarge",
                "m7i.8xlarge",
                "c7a.4xlarge",
                "t3.small",
            ],
            &[
                "c7a.16xlarge",
                "c7i.16xlarge",
                "m7a.16xlarge",
                "m7i.16xlarge",
                "c7a.12xlarge",
                "c7a.8xlarge",
                "t3.small",
            ],
            &[
                "c7a.24xlarge",
                "c7i.24xlarge",
                "m7a.24xlarge",
                "m7i.24xlarge",
                "r7a.24xlarge",
                "c7a.16xlarge",
                "c7a.12xlarge",
                "t3.small",
            ],
            &[
                "c7a.48xlarge",
                "c7i.48xlarge",
                "m7a.48xlarge",
                "m7i.48xlarge",
                "r7a.48xlarge",
                "c7a.32xlarge",
                "c7i.32xlarge",
                "m7a.32xlarge",
                "c7a.24xlarge",
                "c7a.16xlarge",
                "t3.small",
            ],
        ],
        literal_fallback: &["t3.small"],
    },
    ClassTable {
        platform: Platform::Linux(Architecture::Arm64),
        classes: [
            &["m7g.large", "c7g.xlarge", "r7g.large", "t4g.small"],
            &[
                "c7g.2xlarge",
                "m7g.xlarge",
                "r7g.large",
                "c7g.xlarge",
                "t4g.small",
            ],
            &[
                "c7g.8xlarge",
                "m7g.8xlarge",
                "r7g.8xlarge",
                "c7g.4xlarge",
                "t4g.small",
            ],
            &[
                "c7g.16xlarge",
                "m7g.16xlarge",
                "r7g.16xlarge",
                "c7g.12xlarge",
                "c7g.8xlarge",
                "t4g.small",
            ],
            ARM64_LARGE,
            ARM64_LARGE,
        ],
        literal_fallback: &["t4g.small"],
    },
    ClassTable {
        platform: Platform::Windows(WindowsMode::Normal),
        classes: [
            &["m7a.large", "m7i.large", "t3.large"],
            &[
                "c7a.2xlarge",
                "c7i.2xlarge",
                "m7a.xlarge",
                "m7i.xlarge",
                "t3.xlarge",
                "t3.large",
            ],
            &["m7i.large", "m7a.large", "t3.large"],
            &["m7i.xlarge", "m7a.xlarge", "t3.xlarge", "t3.large"],
            &["m7i.2xlarge", "m7a.2xlarge", "t3.2xlarge", "t3.large"],
            &["m7i.4xlarge", "m7a.4xlarge", "m7i.2xlarge", "t3.large"],
        ],
        literal_fallback: &["t3.large"],
    },
    // WSL2 needs nested virtualisation, which only the `*8i` families offer.
    ClassTable {
        platform: Platform::Windows(WindowsMode::Wsl2),
        classes: [
            &["m8i.large", "m8i-flex.large", "c8i.xlarge", "r8i.large"],
            &[
                "c8i.2xlarge",
                "m8i.xlarge",
                "m8i-flex.xlarge",
                "r8i.large",
                "c8i.xlarge",
                "m8i.large",
            ],
            &["m8i.large", "m8i-flex.large", "c8i.large", "r8i.large"],
            &[
                "m8i.xlarge",
                "m8i-flex.xlarge",
                "c8i.xlarge",
                "r8i.xlarge",
                "m8i.large",
            ],
            &[
                "m8i.2xlarge",
                "m8i-flex.2xlarge",
                "c8i.2xlarge",
                "r8i.2xlarge",
                "m8i.large",
            ],
            &[
                "m8i.4xlarge",
                "m8i-flex.4xlarge",
                "c8i.4xlarge",
                "r8i.4xlarge",
                "m8i.2xlarge",
                "m8i.large",
            ],
        ],
        literal_fallback: &["m8i.large"],
    },
    // Every class is the whole Mac list: a Mac is a dedicated host, and which one is free
    // matters more than its size. A literal type falls back to the same list.
    ClassTable {
        platform: Platform::Macos,
        classes: [MACOS, MACOS, MACOS, MACOS, MACOS, MACOS],
        literal_fallback: MACOS,
    },
];

/// EC2's machines.
pub const CATALOG: Catalog = Catalog {
    provider: "aws",
    tables: TABLES,
    is_type_name: shape::is_instance_type,
    example_type: "c7a.8xlarge",
    shape: shape::shape,
};

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use crabbox_core::machine::{CLASSES, TargetOs};

    use super::*;
    use crate::cloud::class::MachineRequest;

    fn candidates(target: TargetOs, mode: WindowsMode, arch: Architecture, class: &str) -> String {
        let request = MachineRequest {
            class,
            server_type: None,
            target,
            windows_mode: mode,
            architecture: arch,
        };
        CATALOG.candidates(&request).unwrap().types.join(", ")
    }

    #[test]
    fn rows_match_the_spec_text() {
        let linux = |arch, class| candidates(TargetOs::Linux, WindowsMode::Normal, arch, class);
        assert_eq!(
            linux(Architecture::X86_64, "beast"),
            "c7a.48xlarge, c7i.48xlarge, m7a.48xlarge, m7i.48xlarge, r7a.48xlarge, c7a.32xlarge, \
             c7i.32xlarge, m7a.32xlarge, c7a.24xlarge, c7a.16xlarge, t3.small"
        );
        assert_eq!(
            linux(Architecture::Arm64, "large"),
            "c7g.16xlarge, m7g.16xlarge, r7g.16xlarge, c7g.12xlarge, t4g.small"
        );
        assert_eq!(
            candidates(
                TargetOs::Windows,
                WindowsMode::Wsl2,
                Architecture::X86_64,
                "beast"
            ),
            "m8i.4xlarge, m8i-flex.4xlarge, c8i.4xlarge, r8i.4xlarge, m8i.2xlarge, m8i.large"
        );
        // macOS ignores the architecture: the Intel Mac is in every list.
        assert_eq!(
            candidates(
                TargetOs::Macos,
                WindowsMode::Normal,
                Architecture::Arm64,
                "tiny"
            ),
            MACOS.join(", ")
        );
        // A literal type gets the final fallback of its target.
        assert_eq!(
            linux(Architecture::X86_64, "c6i.large"),
            "c6i.large, t3.small"
        );
        assert_eq!(
            linux(Architecture::X86_64, "c7g.large"),
            "c7g.large, t4g.small"
        );
        assert_eq!(
            candidates(
                TargetOs::Windows,
                WindowsMode::Normal,
                Architecture::X86_64,
                "m6i.large"
            ),
            "m6i.large, t3.large"
        );
        assert_eq!(
            candidates(
                TargetOs::Windows,
                WindowsMode::Wsl2,
                Architecture::X86_64,
                "m8i.xlarge"
            ),
            "m8i.xlarge, m8i.large"
        );
        assert_eq!(
            candidates(
                TargetOs::Macos,
                WindowsMode::Normal,
                Architecture::X86_64,
                "mac1.metal"
            ),
            format!("mac1.metal, {}", MACOS[..8].join(", "))
        );
    }

    /// The whole catalogue with each type's shape, reviewed as one snapshot.
    #[test]
    fn catalogue() {
        let mut out = String::new();
        for table in CATALOG.tables {
            let _ = writeln!(out, "{}", table.platform);
            for (class, types) in CLASSES.iter().zip(table.classes) {
                let described: Vec<String> = types.iter().map(|t| describe(t)).collect();
                let _ = writeln!(out, "  {class:<8} {}", described.join(", "));
            }
            let _ = writeln!(
                out,
                "  literal  <type>, {}",
                table.literal_fallback.join(", ")
            );
        }
        insta::assert_snapshot!(out);
    }

    fn describe(name: &str) -> String {
        let shape = shape::shape(name);
        let cpus = shape.vcpus.map_or("?".to_owned(), |n| n.to_string());
        let gib = shape.memory_gib.map_or("?".to_owned(), |n| n.to_string());
        let arch = shape.architecture.map_or("", |a| a.as_str());
        format!(
            "{name} ({cpus}/{gib}{}{arch})",
            if arch.is_empty() { "" } else { " " }
        )
    }

    #[test]
    fn wsl2_types_all_support_nested_virtualization() {
        let wsl2 = CATALOG
            .tables
            .iter()
            .find(|t| t.platform == Platform::Windows(WindowsMode::Wsl2))
            .unwrap();
        for types in wsl2.classes {
            assert!(
                types
                    .iter()
                    .all(|t| shape::supports_nested_virtualization(t))
            );
        }
    }
}

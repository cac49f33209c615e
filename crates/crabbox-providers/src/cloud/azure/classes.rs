//! Azure VM sizes per class (spec/providers.md §2.3), as the old tool ordered them: the AMD v6
//! size with a local disk first, then its Intel twin, then the same pair a generation back,
//! with compute-optimised Fsv2 (Intel) mixed in on Linux, then smaller sizes.
//!
//! The spec's arm64 table serves "Linux and Windows-normal arm64", but [`Platform::Windows`]
//! carries no architecture: a Windows request gets the `x86_64` Windows tables whatever
//! architecture was asked for, so arm64 Windows is reachable only with an explicit `--type`.

use crabbox_core::machine::{Architecture, WindowsMode};

use super::shape;
use crate::cloud::class::{Catalog, ClassTable, Platform};

/// Windows sizes do not grow with the class as Linux ones do: the old tool gave standard the
/// tiny sizes and large the small ones, and WSL2 the same lists as normal Windows.
const WINDOWS_TINY: &[&str] = &[
    "Standard_D2ads_v6",
    "Standard_D2ds_v6",
    "Standard_D2ads_v5",
    "Standard_D2ds_v5",
    "Standard_D2as_v6",
];

const WINDOWS_SMALL: &[&str] = &[
    "Standard_D8ads_v6",
    "Standard_D8ds_v6",
    "Standard_D8ads_v5",
    "Standard_D8ds_v5",
    "Standard_D8as_v6",
];

const WINDOWS: [&[&str]; 6] = [
    WINDOWS_TINY,
    WINDOWS_SMALL,
    WINDOWS_TINY,
    &[
        "Standard_D4ads_v6",
        "Standard_D4ds_v6",
        "Standard_D4ads_v5",
        "Standard_D4ds_v5",
        "Standard_D4as_v6",
    ],
    WINDOWS_SMALL,
    &[
        "Standard_D16ads_v6",
        "Standard_D16ds_v6",
        "Standard_D16ads_v5",
        "Standard_D16ds_v5",
        "Standard_D8ads_v6",
    ],
];

/// Azure's lists share no last resort the way EC2's end in a burstable type, so a literal size
/// given as the class falls back to the first size of the table's tiny class: the smallest
/// current general-purpose size, which any subscription's regional quota can hold.
const X86_64_FALLBACK: &[&str] = &["Standard_D2ads_v6"];

const TABLES: &[ClassTable] = &[
    ClassTable {
        platform: Platform::Linux(Architecture::X86_64),
        classes: [
            &[
                "Standard_D2ads_v6",
                "Standard_D2ds_v6",
                "Standard_D2ads_v5",
                "Standard_D2ds_v5",
                "Standard_F2s_v2",
            ],
            &[
                "Standard_D8ads_v6",
                "Standard_D8ds_v6",
                "Standard_F8s_v2",
                "Standard_D8ads_v5",
                "Standard_D8ds_v5",
                "Standard_D4ads_v6",
                "Standard_D4ds_v6",
                "Standard_F4s_v2",
            ],
            &[
                "Standard_D32ads_v6",
                "Standard_D32ds_v6",
                "Standard_F32s_v2",
                "Standard_D32ads_v5",
                "Standard_D32ds_v5",
                "Standard_D16ads_v6",
                "Standard_D16ds_v6",
                "Standard_F16s_v2",
            ],
            &[
                "Standard_D64ads_v6",
                "Standard_D64ds_v6",
                "Standard_F64s_v2",
                "Standard_D64ads_v5",
                "Standard_D64ds_v5",
                "Standard_D48ads_v6",
                "Standard_D48ds_v6",
                "Standard_F48s_v2",
                "Standard_D32ads_v6",
                "Standard_D32ds_v6",
                "Standard_F32s_v2",
            ],
            &[
                "Standard_D96ads_v6",
                "Standard_D96ds_v6",
                "Standard_D96ads_v5",
                "Standard_D96ds_v5",
                "Standard_D64ads_v6",
                "Standard_D64ds_v6",
                "Standard_F64s_v2",
                "Standard_D48ads_v6",
                "Standard_D48ds_v6",
                "Standard_F48s_v2",
            ],
            // Of these families only the Intel v6 goes past 96 vCPUs.
            &[
                "Standard_D192ds_v6",
                "Standard_D128ds_v6",
                "Standard_D96ads_v6",
                "Standard_D96ds_v6",
                "Standard_D96ads_v5",
                "Standard_D96ds_v5",
                "Standard_D64ads_v6",
                "Standard_D64ds_v6",
                "Standard_F64s_v2",
            ],
        ],
        literal_fallback: X86_64_FALLBACK,
    },
    // Cobalt 100: with (`pds`) and without (`ps`) a local disk. The family tops out at 96
    // vCPUs, so beast is large without its smallest pair.
    ClassTable {
        platform: Platform::Linux(Architecture::Arm64),
        classes: [
            &["Standard_D2pds_v6", "Standard_D2ps_v6"],
            &[
                "Standard_D8pds_v6",
                "Standard_D8ps_v6",
                "Standard_D4pds_v6",
                "Standard_D4ps_v6",
            ],
            &[
                "Standard_D32pds_v6",
                "Standard_D32ps_v6",
                "Standard_D16pds_v6",
                "Standard_D16ps_v6",
            ],
            &[
                "Standard_D64pds_v6",
                "Standard_D64ps_v6",
                "Standard_D48pds_v6",
                "Standard_D48ps_v6",
                "Standard_D32pds_v6",
                "Standard_D32ps_v6",
            ],
            &[
                "Standard_D96pds_v6",
                "Standard_D96ps_v6",
                "Standard_D64pds_v6",
                "Standard_D64ps_v6",
                "Standard_D48pds_v6",
                "Standard_D48ps_v6",
            ],
            &[
                "Standard_D96pds_v6",
                "Standard_D96ps_v6",
                "Standard_D64pds_v6",
                "Standard_D64ps_v6",
            ],
        ],
        // The arm64 counterpart of the x86_64 fallback: the first tiny size.
        literal_fallback: &["Standard_D2pds_v6"],
    },
    ClassTable {
        platform: Platform::Windows(WindowsMode::Normal),
        classes: WINDOWS,
        literal_fallback: X86_64_FALLBACK,
    },
    ClassTable {
        platform: Platform::Windows(WindowsMode::Wsl2),
        classes: WINDOWS,
        literal_fallback: X86_64_FALLBACK,
    },
];

/// Azure's machines.
pub const CATALOG: Catalog = Catalog {
    provider: "azure",
    tables: TABLES,
    is_type_name: shape::is_vm_size,
    example_type: "Standard_D8ads_v6",
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
        CATALOG
            .candidates(&request)
            .map_or_else(|e| e.to_string(), |c| c.types.join(", "))
    }

    fn linux(arch: Architecture, class: &str) -> String {
        candidates(TargetOs::Linux, WindowsMode::Normal, arch, class)
    }

    fn windows(mode: WindowsMode, class: &str) -> String {
        candidates(TargetOs::Windows, mode, Architecture::X86_64, class)
    }

    /// The spec's rows with `Standard_` put back, as the spec lists them.
    fn spec_row(sizes: &str) -> String {
        sizes
            .split(", ")
            .map(|size| format!("Standard_{size}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn linux_x86_64_rows_match_the_spec_table() {
        let x86 = |class| linux(Architecture::X86_64, class);
        assert_eq!(
            x86("tiny"),
            "Standard_D2ads_v6, Standard_D2ds_v6, Standard_D2ads_v5, Standard_D2ds_v5, \
             Standard_F2s_v2"
        );
        assert_eq!(
            x86("small"),
            "Standard_D8ads_v6, Standard_D8ds_v6, Standard_F8s_v2, Standard_D8ads_v5, \
             Standard_D8ds_v5, Standard_D4ads_v6, Standard_D4ds_v6, Standard_F4s_v2"
        );
        assert_eq!(
            x86("standard"),
            "Standard_D32ads_v6, Standard_D32ds_v6, Standard_F32s_v2, Standard_D32ads_v5, \
             Standard_D32ds_v5, Standard_D16ads_v6, Standard_D16ds_v6, Standard_F16s_v2"
        );
        assert_eq!(
            x86("fast"),
            "Standard_D64ads_v6, Standard_D64ds_v6, Standard_F64s_v2, Standard_D64ads_v5, \
             Standard_D64ds_v5, Standard_D48ads_v6, Standard_D48ds_v6, Standard_F48s_v2, \
             Standard_D32ads_v6, Standard_D32ds_v6, Standard_F32s_v2"
        );
        assert_eq!(
            x86("large"),
            "Standard_D96ads_v6, Standard_D96ds_v6, Standard_D96ads_v5, Standard_D96ds_v5, \
             Standard_D64ads_v6, Standard_D64ds_v6, Standard_F64s_v2, Standard_D48ads_v6, \
             Standard_D48ds_v6, Standard_F48s_v2"
        );
        assert_eq!(
            x86("beast"),
            "Standard_D192ds_v6, Standard_D128ds_v6, Standard_D96ads_v6, Standard_D96ds_v6, \
             Standard_D96ads_v5, Standard_D96ds_v5, Standard_D64ads_v6, Standard_D64ds_v6, \
             Standard_F64s_v2"
        );
    }

    #[test]
    fn arm64_rows_match_the_spec_text() {
        let spec = [
            ("tiny", "D2pds_v6, D2ps_v6"),
            ("small", "D8pds_v6, D8ps_v6, D4pds_v6, D4ps_v6"),
            ("standard", "D32pds_v6, D32ps_v6, D16pds_v6, D16ps_v6"),
            (
                "fast",
                "D64pds_v6, D64ps_v6, D48pds_v6, D48ps_v6, D32pds_v6, D32ps_v6",
            ),
            (
                "large",
                "D96pds_v6, D96ps_v6, D64pds_v6, D64ps_v6, D48pds_v6, D48ps_v6",
            ),
            ("beast", "D96pds_v6, D96ps_v6, D64pds_v6, D64ps_v6"),
        ];
        for (class, sizes) in spec {
            assert_eq!(
                linux(Architecture::Arm64, class),
                spec_row(sizes),
                "{class}"
            );
        }
    }

    #[test]
    fn windows_rows_match_the_spec_text_in_both_modes() {
        let tiny = "D2ads_v6, D2ds_v6, D2ads_v5, D2ds_v5, D2as_v6";
        let small = "D8ads_v6, D8ds_v6, D8ads_v5, D8ds_v5, D8as_v6";
        let spec = [
            ("tiny", tiny),
            ("small", small),
            ("standard", tiny),
            ("fast", "D4ads_v6, D4ds_v6, D4ads_v5, D4ds_v5, D4as_v6"),
            ("large", small),
            (
                "beast",
                "D16ads_v6, D16ds_v6, D16ads_v5, D16ds_v5, D8ads_v6",
            ),
        ];
        for mode in [WindowsMode::Normal, WindowsMode::Wsl2] {
            for (class, sizes) in spec {
                assert_eq!(windows(mode, class), spec_row(sizes), "{mode} {class}");
            }
        }
        // Windows tables are x86_64 only: an arm64 request still gets them.
        assert_eq!(
            candidates(
                TargetOs::Windows,
                WindowsMode::Normal,
                Architecture::Arm64,
                "tiny"
            ),
            spec_row(tiny)
        );
    }

    #[test]
    fn literal_sizes_fall_back_by_their_own_architecture() {
        let x86 = |class| linux(Architecture::X86_64, class);
        assert_eq!(
            x86("Standard_F16s_v2"),
            "Standard_F16s_v2, Standard_D2ads_v6"
        );
        assert_eq!(x86("Standard_D2ads_v6"), "Standard_D2ads_v6");
        assert_eq!(
            x86("Standard_D8pds_v6"),
            "Standard_D8pds_v6, Standard_D2pds_v6"
        );
        assert_eq!(
            linux(Architecture::Arm64, "Standard_D8ads_v6"),
            "Standard_D8ads_v6, Standard_D2ads_v6"
        );
        assert_eq!(
            windows(WindowsMode::Wsl2, "Standard_D8ds_v5"),
            "Standard_D8ds_v5, Standard_D2ads_v6"
        );
        // Sizes are written as Azure writes them; another case is a misspelt class.
        let lowercase = x86("standard_d8ads_v6");
        assert!(
            lowercase.starts_with("unknown class") && lowercase.contains("like Standard_D8ads_v6"),
            "{lowercase}"
        );
        assert_eq!(
            candidates(
                TargetOs::Macos,
                WindowsMode::Normal,
                Architecture::Arm64,
                "tiny"
            ),
            "azure has no macos machines (it offers linux/x86_64, linux/arm64, windows/normal, \
             windows/wsl2)"
        );
    }

    /// The whole catalogue with each size's shape, reviewed as one snapshot.
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
        let arch = shape.architecture.map_or("?", |a| a.as_str());
        format!("{name} ({cpus}/{gib} {arch})")
    }

    #[test]
    fn every_listed_size_has_a_known_shape_of_its_table() {
        for table in CATALOG.tables {
            let arch = match table.platform {
                Platform::Linux(arch) => arch,
                _ => Architecture::X86_64,
            };
            for size in table.classes.iter().flat_map(|c| c.iter()) {
                let shape = shape::shape(size);
                assert!(
                    shape.vcpus.is_some() && shape.memory_gib.is_some(),
                    "{size}"
                );
                assert_eq!(shape.architecture, Some(arch), "{size}");
            }
        }
    }
}

//! Hetzner server types per class (spec/providers.md §2.1): dedicated vCPU types (`ccx`)
//! first, then shared AMD (`cpx`), then shared Intel/AMD cost-optimised (`cx`). Hetzner has no
//! spot market and no separate Windows offer. The arm64 table (Ampere `cax`) is beyond the old
//! tool, which knew only `x86_64`.

use crabbox_core::machine::Architecture;

use crate::cloud::class::{Catalog, ClassTable, MachineShape, Platform};

/// Large and beast end on the same types: `ccx63` is the biggest Hetzner sells.
const TABLES: &[ClassTable] = &[
    ClassTable {
        platform: Platform::Linux(Architecture::X86_64),
        classes: [
            &["ccx13", "cpx22", "cx23"],
            &["ccx23", "cpx32", "cx33"],
            &["ccx33", "cpx62", "cx53"],
            &["ccx43", "cpx62", "cx53"],
            &["ccx53", "ccx43", "cpx62", "cx53"],
            &["ccx63", "ccx53", "ccx43", "cpx62", "cx53"],
        ],
        literal_fallback: &["cx53"],
    },
    ClassTable {
        platform: Platform::Linux(Architecture::Arm64),
        classes: [
            &["cax11"],
            &["cax21", "cax11"],
            &["cax31", "cax21"],
            &["cax41", "cax31"],
            &["cax41", "cax31"],
            &["cax41", "cax31"],
        ],
        literal_fallback: &["cax41"],
    },
];

/// Hetzner's machines.
pub const CATALOG: Catalog = Catalog {
    provider: "hetzner",
    tables: TABLES,
    is_type_name,
    example_type: "ccx33",
    shape,
};

/// vCPUs and GiB of memory of the types Crabbox uses, from Hetzner's server type list.
const SHAPES: &[(&str, u32, u32)] = &[
    ("cx23", 2, 4),
    ("cx33", 4, 8),
    ("cx43", 8, 16),
    ("cx53", 16, 32),
    ("cpx12", 1, 2),
    ("cpx22", 2, 4),
    ("cpx32", 4, 8),
    ("cpx42", 8, 16),
    ("cpx52", 12, 24),
    ("cpx62", 16, 32),
    ("ccx13", 2, 8),
    ("ccx23", 4, 16),
    ("ccx33", 8, 32),
    ("ccx43", 16, 64),
    ("ccx53", 32, 128),
    ("ccx63", 48, 192),
    ("cax11", 2, 4),
    ("cax21", 4, 8),
    ("cax31", 8, 16),
    ("cax41", 16, 32),
];

/// Whether `name` is shaped like a Hetzner server type: lowercase letters, then digits
/// (`ccx33`, `cpx62`, `cax11`).
pub fn is_type_name(name: &str) -> bool {
    let letters = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = &name[letters.len()..];
    (2..=4).contains(&letters.len())
        && letters.chars().all(|c| c.is_ascii_lowercase())
        && !digits.is_empty()
}

/// What the type's name says: its size from the table, arm64 for the `cax` family.
pub fn shape(name: &str) -> MachineShape {
    let known = SHAPES.iter().find(|(known, _, _)| *known == name);
    MachineShape {
        vcpus: known.map(|(_, vcpus, _)| *vcpus),
        memory_gib: known.map(|(_, _, gib)| *gib),
        architecture: is_type_name(name).then(|| {
            if name.starts_with("cax") {
                Architecture::Arm64
            } else {
                Architecture::X86_64
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use crabbox_core::machine::{TargetOs, WindowsMode};

    use super::*;
    use crate::cloud::class::MachineRequest;

    fn candidates(arch: Architecture, class: &str) -> String {
        CATALOG
            .candidates(&MachineRequest {
                class,
                server_type: None,
                target: TargetOs::Linux,
                windows_mode: WindowsMode::Normal,
                architecture: arch,
            })
            .map_or_else(|e| e.to_string(), |c| c.types.join(", "))
    }

    #[test]
    fn classes_follow_the_spec_table() {
        let x86 = |class| candidates(Architecture::X86_64, class);
        assert_eq!(x86("tiny"), "ccx13, cpx22, cx23");
        assert_eq!(x86("small"), "ccx23, cpx32, cx33");
        assert_eq!(x86("standard"), "ccx33, cpx62, cx53");
        assert_eq!(x86("fast"), "ccx43, cpx62, cx53");
        assert_eq!(x86("large"), "ccx53, ccx43, cpx62, cx53");
        assert_eq!(x86("beast"), "ccx63, ccx53, ccx43, cpx62, cx53");
        assert_eq!(candidates(Architecture::Arm64, "beast"), "cax41, cax31");
        // A literal type falls back to the platform's last resort; its own family picks it.
        assert_eq!(x86("ccx23"), "ccx23, cx53");
        assert_eq!(x86("cax21"), "cax21, cax41");
        assert!(
            x86("c7a.large").contains("unknown class"),
            "{}",
            x86("c7a.large")
        );
    }

    #[test]
    fn shapes_and_names() {
        assert_eq!(shape("ccx63").vcpus, Some(48));
        assert_eq!(shape("ccx63").memory_gib, Some(192));
        assert_eq!(shape("cax31").architecture, Some(Architecture::Arm64));
        assert_eq!(shape("cpx62").architecture, Some(Architecture::X86_64));
        assert_eq!(shape("cx99").vcpus, None);
        for bad in ["", "ccx", "33", "CCX33", "c7a.large", "ccx33a", "verylong1"] {
            assert!(!is_type_name(bad), "{bad}");
        }
    }
}

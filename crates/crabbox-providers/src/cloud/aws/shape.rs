//! What an EC2 instance type's name says about it (spec/providers.md §2.2): its vCPUs, its
//! memory for the families Crabbox uses, and whether it is an arm64 (Graviton or Apple) type.
//! Enough for a quota preflight and for choosing an image; anything else asks EC2.

use crabbox_core::machine::Architecture;

use crate::cloud::class::MachineShape;

/// GiB of memory per vCPU. AWS publishes C7/C8 compute-optimised instances at 2, M7/M8
/// general-purpose at 4 and R7/R8 memory-optimised at 8 in its EC2 instance-family tables.
const GIB_PER_VCPU: &[(&str, u32)] = &[
    ("c7a", 2),
    ("c7g", 2),
    ("c7i", 2),
    ("c8i", 2),
    ("m7a", 4),
    ("m7g", 4),
    ("m7i", 4),
    ("m8i", 4),
    ("m8i-flex", 4),
    ("r7a", 8),
    ("r7g", 8),
    ("r8i", 8),
];

/// The burstable last-resort types, whose memory follows no family ratio.
const BURSTABLE_GIB: &[(&str, u32)] = &[
    ("t3.small", 2),
    ("t4g.small", 2),
    ("t3.large", 8),
    ("t3.xlarge", 16),
    ("t3.2xlarge", 32),
];

/// Graviton families whose names do not follow the `c|m|r<generation>g…` pattern.
const OTHER_GRAVITON: &[&str] = &[
    "a1", "g5g", "hpc7g", "i4g", "im4gn", "is4gen", "t4g", "x2gd",
];

/// Whether `name` is shaped like an instance type: `<family>.<size>` in lowercase, such as
/// `c7a.48xlarge`, `m8i-flex.large` or `mac2-m2pro.metal`.
pub fn is_instance_type(name: &str) -> bool {
    let Some((family, size)) = name.split_once('.') else {
        return false;
    };
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    family.starts_with(lower_alnum)
        && family.chars().all(|c| lower_alnum(c) || c == '-')
        && !size.is_empty()
        && size.chars().all(lower_alnum)
}

/// vCPUs: `<n>xlarge` has 4n, `xlarge` 4, `nano` to `large` 2; unknown for `metal`.
pub fn vcpus(name: &str) -> Option<u32> {
    let (_, size) = name.split_once('.')?;
    if let Some(multiplier) = size.strip_suffix("xlarge") {
        if multiplier.is_empty() {
            return Some(4);
        }
        return multiplier.parse::<u32>().ok().map(|n| n * 4);
    }
    matches!(size, "nano" | "micro" | "small" | "medium" | "large").then_some(2)
}

/// Memory in GiB, for the families of the class tables.
pub fn memory_gib(name: &str) -> Option<u32> {
    if let Some((_, gib)) = BURSTABLE_GIB.iter().find(|(known, _)| *known == name) {
        return Some(*gib);
    }
    let (family, _) = name.split_once('.')?;
    let (_, per_vcpu) = GIB_PER_VCPU.iter().find(|(known, _)| *known == family)?;
    Some(vcpus(name)? * per_vcpu)
}

/// The architecture a type's name implies: arm64 for Graviton and Apple silicon Macs, `x86_64`
/// for the Intel Mac (`mac1`); `None` when the name does not say.
pub fn architecture(name: &str) -> Option<Architecture> {
    let (family, _) = name.split_once('.')?;
    if family == "mac1" {
        return Some(Architecture::X86_64);
    }
    if family.starts_with("mac") || is_graviton(family) {
        return Some(Architecture::Arm64);
    }
    None
}

fn is_graviton(family: &str) -> bool {
    if OTHER_GRAVITON.contains(&family) {
        return true;
    }
    let Some(rest) = family.strip_prefix(['c', 'm', 'r']) else {
        return false;
    };
    let suffix = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    suffix.len() < rest.len() && matches!(suffix, "g" | "gd" | "gn")
}

/// Whether the type can run WSL2, which needs nested virtualisation (the `*8i` families).
pub fn supports_nested_virtualization(name: &str) -> bool {
    name.split_once('.')
        .is_some_and(|(family, _)| matches!(family, "c8i" | "m8i" | "m8i-flex" | "r8i"))
}

/// Everything the name says, as the class model wants it.
pub fn shape(name: &str) -> MachineShape {
    MachineShape {
        vcpus: vcpus(name),
        memory_gib: memory_gib(name),
        architecture: architecture(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpus_and_memory_follow_the_size_and_family() {
        let cases = [
            ("c7a.48xlarge", Some(192), Some(384)),
            ("m7i.xlarge", Some(4), Some(16)),
            ("r7a.24xlarge", Some(96), Some(768)),
            ("m8i-flex.large", Some(2), Some(8)),
            ("t3.small", Some(2), Some(2)),
            ("t3.large", Some(2), Some(8)),
            ("t3.xlarge", Some(4), Some(16)),
            ("t3.medium", Some(2), None),
            ("mac2.metal", None, None),
            ("c7a.hugexlarge", None, None),
            ("nodot", None, None),
        ];
        for (name, cpus, gib) in cases {
            assert_eq!((vcpus(name), memory_gib(name)), (cpus, gib), "{name}");
        }
    }

    #[test]
    fn architecture_from_the_family() {
        for arm in [
            "c7g.large",
            "r7gd.xlarge",
            "c6gn.large",
            "t4g.small",
            "mac2-m2pro.metal",
        ] {
            assert_eq!(architecture(arm), Some(Architecture::Arm64), "{arm}");
        }
        assert_eq!(architecture("mac1.metal"), Some(Architecture::X86_64));
        for unknown in ["c7a.large", "m7i.large", "g5.xlarge", "c.large", "cg.large"] {
            assert_eq!(architecture(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn type_names() {
        for good in [
            "c7a.48xlarge",
            "m8i-flex.large",
            "mac2-m2pro.metal",
            "u-6tb1.metal",
        ] {
            assert!(is_instance_type(good), "{good}");
        }
        for bad in [
            "beats",
            "C7A.LARGE",
            "c7a.",
            ".large",
            "c7a large",
            "-c.large",
            "c7a.x-large",
        ] {
            assert!(!is_instance_type(bad), "{bad}");
        }
        assert!(supports_nested_virtualization("m8i-flex.4xlarge"));
        assert!(!supports_nested_virtualization("m7i.4xlarge"));
    }
}

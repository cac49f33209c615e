//! What an Azure VM size's name says about it (spec/providers.md §2.3). Sizes are named by
//! Microsoft's convention, `Standard_<family><vCPUs>[-<active vCPUs>]<features>[_<accelerator>]
//! [_v<version>]`: `Standard_D8ads_v6` is an 8-vCPU D-family v6 with AMD (`a`), a local disk
//! (`d`) and premium storage (`s`); a `p` marks an Arm (Ampere or Cobalt) processor. Enough for
//! a quota preflight and for choosing an image; anything else asks ARM's resource SKU list.

use crabbox_core::machine::Architecture;

use crate::cloud::class::MachineShape;

/// Families whose sizes before v3 predate the naming convention (`D1`, `D1_v2`, `DS1_v2`,
/// `G1`): their number is a position in the series, not a vCPU count (`Standard_D11_v2` has
/// 2 vCPUs, `Standard_D4_v2` 8). So does the original A series (`Standard_A4`, no version);
/// Av2 (`Standard_A4_v2`) follows the convention.
const PRE_CONVENTION: &[&str] = &["D", "DS", "G", "GS"];

/// A size name taken apart: `Standard_E96-48ads_v5` is family `E`, 96 vCPUs of which 48 are
/// active, features `ads`, version 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SizeName<'a> {
    family: &'a str,
    number: u32,
    /// The vCPUs left active in a constrained-core size (the number after the dash).
    active: Option<u32>,
    features: &'a str,
    version: Option<u32>,
}

fn parse(name: &str) -> Option<SizeName<'_>> {
    let mut segments = name.strip_prefix("Standard_")?.split('_');
    let head = segments.next()?;
    let (family, rest) = split_while(head, |c| c.is_ascii_uppercase());
    let (number, rest) = split_while(rest, |c| c.is_ascii_digit());
    let (active, features) = match rest.strip_prefix('-') {
        Some(constrained) => {
            let (active, features) = split_while(constrained, |c| c.is_ascii_digit());
            (Some(active.parse().ok()?), features)
        }
        None => (None, rest),
    };
    if !(1..=3).contains(&family.len()) || !features.chars().all(|c| c.is_ascii_lowercase()) {
        return None;
    }
    let mut version = None;
    for segment in segments {
        if segment.is_empty() || !segment.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        if let Some(v) = segment.strip_prefix('v').and_then(|v| v.parse().ok()) {
            version = Some(v);
        }
    }
    Some(SizeName {
        family,
        number: number.parse().ok()?,
        active,
        features,
        version,
    })
}

fn split_while(s: &str, keep: impl Fn(char) -> bool) -> (&str, &str) {
    s.split_at(s.find(|c| !keep(c)).unwrap_or(s.len()))
}

/// Whether `name` is shaped like a VM size as Azure writes it: `Standard_`, the family in
/// capitals, the vCPUs, the feature letters in lowercase, then `_`-separated parts such as
/// the version (`Standard_D8ads_v6`, `Standard_F16s_v2`, `Standard_NC24ads_A100_v4`,
/// `Standard_E96-48ads_v5`, `Standard_B1ls`).
pub fn is_vm_size(name: &str) -> bool {
    parse(name).is_some()
}

/// vCPUs: the number after the family letters, or the active vCPUs of a constrained-core
/// size; unknown for the series that predate the naming convention.
pub fn vcpus(name: &str) -> Option<u32> {
    let size = parse(name)?;
    let pre_convention = if size.family == "A" {
        size.version.is_none()
    } else {
        PRE_CONVENTION.contains(&size.family) && size.version.is_none_or(|v| v < 3)
    };
    if pre_convention {
        return None;
    }
    Some(size.active.unwrap_or(size.number))
}

/// GiB of memory, for the families of the size tables. Microsoft's size pages give the D-series
/// v5 and v6 (`Dsv6`, `Ddsv6`, `Dasv6`, `Dadsv6`, `Dpsv6`, `Dpdsv6`, their v5 kin) 4 GiB per
/// vCPU and their low-memory `l` variants 2, and Fsv2 2 GiB per vCPU (`Standard_F2s_v2`: 4 GiB,
/// `Standard_F72s_v2`: 144). A constrained-core size keeps the memory of its full count.
pub fn memory_gib(name: &str) -> Option<u32> {
    let size = parse(name)?;
    let per_vcpu = match (size.family, size.version?) {
        ("D", 5 | 6) if size.features.contains('l') => 2,
        ("D", 5 | 6) => 4,
        ("F", 2) if size.features == "s" => 2,
        _ => return None,
    };
    Some(size.number * per_vcpu)
}

/// The architecture of a size: arm64 when its features include `p`, else `x86_64`; `None` for
/// a name that is not a size.
pub fn architecture(name: &str) -> Option<Architecture> {
    let size = parse(name)?;
    Some(if size.features.contains('p') {
        Architecture::Arm64
    } else {
        Architecture::X86_64
    })
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
    fn vcpus_and_memory_follow_the_name_and_family() {
        let cases = [
            ("Standard_D2ads_v6", Some(2), Some(8)),
            ("Standard_D192ds_v6", Some(192), Some(768)),
            ("Standard_D128ds_v6", Some(128), Some(512)),
            ("Standard_D96ads_v5", Some(96), Some(384)),
            ("Standard_D8as_v6", Some(8), Some(32)),
            ("Standard_D64pds_v6", Some(64), Some(256)),
            ("Standard_D16plds_v5", Some(16), Some(32)),
            ("Standard_F2s_v2", Some(2), Some(4)),
            ("Standard_F72s_v2", Some(72), Some(144)),
            ("Standard_E96-48ads_v5", Some(48), None),
            ("Standard_D2s_v3", Some(2), None),
            ("Standard_A2m_v2", Some(2), None),
            ("Standard_NC24ads_A100_v4", Some(24), None),
            ("Standard_B1ls", Some(1), None),
            ("Standard_D11_v2", None, None),
            ("Standard_DS13-2_v2", None, None),
            ("Standard_D2_v2_Promo", None, None),
            ("Standard_A4", None, None),
            ("c7a.large", None, None),
        ];
        for (name, cpus, gib) in cases {
            assert_eq!((vcpus(name), memory_gib(name)), (cpus, gib), "{name}");
        }
    }

    #[test]
    fn a_p_in_the_features_is_arm64() {
        for arm in [
            "Standard_D8pds_v6",
            "Standard_D8ps_v6",
            "Standard_D2pls_v5",
            "Standard_E16pds_v6",
        ] {
            assert_eq!(architecture(arm), Some(Architecture::Arm64), "{arm}");
        }
        for x86 in [
            "Standard_D8ads_v6",
            "Standard_F16s_v2",
            "Standard_NP10s",
            "Standard_D2_v2",
        ] {
            assert_eq!(architecture(x86), Some(Architecture::X86_64), "{x86}");
        }
        assert_eq!(architecture("Standard_"), None);
    }

    #[test]
    fn size_names() {
        for good in [
            "Standard_D8ads_v6",
            "Standard_F16s_v2",
            "Standard_NC24ads_A100_v4",
            "Standard_E96-48ads_v5",
            "Standard_HB120-16rs_v3",
            "Standard_NCC40ads_H100_v5",
            "Standard_D2_v2_Promo",
            "Standard_B1ls",
            "Standard_M416ms_v2",
        ] {
            assert!(is_vm_size(good), "{good}");
        }
        for bad in [
            "beast",
            "Standard_",
            "Standard_D",
            "Standard_8ads_v6",
            "standard_d8ads_v6",
            "Standard_d8ads_v6",
            "Standard_D8ADS_v6",
            "Standard_D8ads__v6",
            "Standard_D8ads_v6_",
            "Standard_D8ads v6",
            "Standard_D8-ads_v6",
            "Standard_ABCD8s",
            "Basic_A0",
            "D8ads_v6",
            "c7a.8xlarge",
        ] {
            assert!(!is_vm_size(bad), "{bad}");
        }
    }
}

//! Friendly lease slugs (spec/cli-dataplane.md §2.1), ported exactly so a lease keeps the slug
//! the old tool would have given it.

const ADJECTIVES: [&str; 14] = [
    "amber", "blue", "brisk", "coral", "crimson", "golden", "harbor", "jade", "pearl", "quick",
    "silver", "swift", "tidal", "violet",
];
const NOUNS: [&str; 8] = [
    "barnacle", "crab", "crayfish", "hermit", "krill", "lobster", "prawn", "shrimp",
];

/// Longest slug a user may request.
pub const MAX_SLUG_LEN: usize = 41;

/// How many suffixed candidates are tried before the final fallback.
const COLLISION_TRIES: usize = 20;

/// FNV-1a, 32 bit.
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in data {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The slug a lease id gets when none was requested.
pub fn slug_for_lease(lease_id: &str) -> String {
    let h = fnv1a32(lease_id.as_bytes());
    let adjective = ADJECTIVES[(h % 14) as usize];
    let noun = NOUNS[((h / 14) % 8) as usize];
    format!("{adjective}-{noun}")
}

/// Normalizes a requested slug: lowercase, runs of anything but `[a-z0-9]` become one `-`,
/// leading and trailing dashes trimmed.
pub fn normalize_slug(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_dash = false;
    for ch in raw.trim().chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(ch);
        } else {
            pending_dash = true;
        }
    }
    out
}

/// Error for a requested slug that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlugError {
    #[error("slug {0:?} is empty after normalization (use letters, digits and dashes)")]
    Empty(String),
    #[error("slug {raw:?} is {len} characters after normalization; the limit is {MAX_SLUG_LEN}")]
    TooLong { raw: String, len: usize },
    #[error("could not allocate a unique lease slug for {0}")]
    Exhausted(String),
}

/// Validates and normalizes a user-requested slug.
pub fn requested_slug(raw: &str) -> Result<String, SlugError> {
    let slug = normalize_slug(raw);
    if slug.is_empty() {
        return Err(SlugError::Empty(raw.to_owned()));
    }
    if slug.len() > MAX_SLUG_LEN {
        return Err(SlugError::TooLong {
            raw: raw.to_owned(),
            len: slug.len(),
        });
    }
    Ok(slug)
}

fn with_suffix(base: &str, seed: &str) -> String {
    let truncated: String = base.chars().take(MAX_SLUG_LEN).collect();
    let trimmed = truncated.trim_end_matches('-');
    format!("{trimmed}-{:04x}", fnv1a32(seed.as_bytes()) & 0xffff)
}

/// Picks the first free slug: the base, then suffixed candidates seeded with
/// `<lease>-0` … `<lease>-18`, then one seeded with the lease id alone.
pub fn allocate_slug(
    base: &str,
    lease_id: &str,
    mut taken: impl FnMut(&str) -> bool,
) -> Result<String, SlugError> {
    let mut candidate = base.to_owned();
    for attempt in 0..COLLISION_TRIES {
        if !taken(&candidate) {
            return Ok(candidate);
        }
        candidate = with_suffix(base, &format!("{lease_id}-{attempt}"));
    }
    let last = with_suffix(base, lease_id);
    if taken(&last) {
        Err(SlugError::Exhausted(lease_id.to_owned()))
    } else {
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn slug_is_deterministic_and_from_vocab() {
        let slug = slug_for_lease("cbx_0123456789ab");
        assert_eq!(slug, slug_for_lease("cbx_0123456789ab"));
        let (adj, noun) = slug.split_once('-').unwrap();
        assert!(ADJECTIVES.contains(&adj) && NOUNS.contains(&noun), "{slug}");
        let h = fnv1a32(b"cbx_0123456789ab");
        assert_eq!(adj, ADJECTIVES[(h % 14) as usize]);
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_slug("  My Box__2!! "), "my-box-2");
        assert_eq!(normalize_slug("--a--b--"), "a-b");
        assert_eq!(requested_slug("!!!"), Err(SlugError::Empty("!!!".into())));
        assert!(matches!(
            requested_slug(&"a".repeat(42)),
            Err(SlugError::TooLong { len: 42, .. })
        ));
    }

    #[test]
    fn collisions_get_suffixes_then_fail() {
        let first = allocate_slug("blue-crab", "cbx_000000000001", |s| s == "blue-crab").unwrap();
        assert_eq!(first, with_suffix("blue-crab", "cbx_000000000001-0"));
        assert!(first.starts_with("blue-crab-") && first.len() == "blue-crab-".len() + 4);
        let mut seen = Vec::new();
        let err = allocate_slug("blue-crab", "cbx_000000000001", |s| {
            seen.push(s.to_owned());
            true
        });
        assert_eq!(err, Err(SlugError::Exhausted("cbx_000000000001".into())));
        assert_eq!(seen.len(), 21);
        assert_eq!(seen[20], with_suffix("blue-crab", "cbx_000000000001"));
    }

    #[test]
    fn go_golden_fixtures_and_provider_name_hash() {
        assert_eq!(slug_for_lease("cbx_000000000001"), "tidal-lobster");
        assert_eq!(slug_for_lease("cbx_abcdef123456"), "blue-prawn");
        assert_eq!(slug_for_lease("cbx_deadbeefcafe"), "silver-crab");
        // `crabbox-blue-lobster-c80c2195`, the old provider name of that lease.
        assert_eq!(fnv1a32(b"cbx_abcdef123456"), 0xc80c_2195);
    }

    #[test]
    fn collision_suffixes_stay_within_the_provider_name_bound() {
        let suffixed = with_suffix(&"b".repeat(80), "cbx_abcdef123456");
        let (base, suffix) = suffixed.rsplit_once('-').unwrap();
        assert_eq!(base, "b".repeat(MAX_SLUG_LEN));
        assert!(suffix.len() == 4 && suffix.bytes().all(|b| b.is_ascii_hexdigit()));
        // "crabbox-" + slug + "-" + 8 hex digits fits a 63-character DNS label.
        assert!(8 + suffixed.len() + 1 + 8 <= 63);
        assert_eq!(
            requested_slug(&"a".repeat(MAX_SLUG_LEN)),
            Ok("a".repeat(MAX_SLUG_LEN))
        );
        assert!(matches!(
            requested_slug(&"A! ".repeat(MAX_SLUG_LEN)),
            Err(SlugError::TooLong { .. })
        ));
    }
}

//! Git-aware sync: manifest, excludes, fingerprint.

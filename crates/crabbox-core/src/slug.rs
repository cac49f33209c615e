//! Friendly lease slugs.

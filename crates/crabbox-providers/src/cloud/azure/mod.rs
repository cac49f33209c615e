//! Azure data for the shared cloud model (being written).

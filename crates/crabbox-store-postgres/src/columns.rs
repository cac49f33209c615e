//! Text as PostgreSQL can hold it: `TEXT` rejects NUL, so indexed columns (and the values
//! compared with them) carry U+FFFD instead. Documents are JSON, whose encoding escapes NUL,
//! so records themselves round-trip exactly.

use std::borrow::Cow;

pub(crate) fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

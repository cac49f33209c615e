//! One sync pattern (`node_modules`, `apps/*/.build`, `*.log`, `build/`) compiled for matching
//! against POSIX relative paths split into components.
//!
//! A pattern without `/` matches any single path component; a pattern with `/` (or a leading
//! `/`) is anchored at the root and matches a directory prefix of the path or the whole path.
//! Within a component `*` matches any run of characters, `?` one character, `[a-z]`/`[!a-z]` a
//! class, and `\` escapes the next character; a whole `**` component matches any number of
//! components. A trailing `/` restricts the pattern to directories.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    segs: Vec<Seg>,
    /// Contains a `/`: matched against path prefixes from the root, not single components.
    anchored: bool,
    /// Written with a trailing `/`: only matches directories.
    dir_only: bool,
    /// Contains a `**` component, so the number of components it spans varies.
    any_depth: bool,
    /// ASCII case-insensitive (used for Crabbox's own protected paths).
    fold_case: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(String),
    Glob(Vec<Tok>),
    AnyDepth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Pattern {
    /// Compiles `text`; `None` when nothing is left to match (empty, `/`, `./`).
    pub(crate) fn parse(text: &str, fold_case: bool) -> Option<Self> {
        let mut text = text;
        while let Some(rest) = text.strip_prefix("./") {
            text = rest;
        }
        let mut dir_only = false;
        while text.ends_with('/') && !text.ends_with("\\/") {
            dir_only = true;
            text = &text[..text.len() - 1];
        }
        let rooted = text.starts_with('/');
        let text = text.trim_start_matches('/');
        let segs: Vec<Seg> = text
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(Seg::parse)
            .collect();
        if segs.is_empty() {
            return None;
        }
        let anchored = rooted || segs.len() > 1;
        let any_depth = segs.contains(&Seg::AnyDepth);
        Some(Self {
            segs,
            anchored,
            dir_only,
            any_depth,
            fold_case,
        })
    }

    /// Whether the pattern matches the path whose components are `comps` (`is_dir` tells
    /// whether the last component is a directory).
    pub(crate) fn matches(&self, comps: &[&str], is_dir: bool) -> bool {
        let n = comps.len();
        // Every component but the last is a directory.
        let usable = |k: usize| !self.dir_only || k < n || is_dir;
        if !self.anchored {
            let seg = &self.segs[0];
            return comps
                .iter()
                .enumerate()
                .any(|(i, c)| usable(i + 1) && seg.matches(c, self.fold_case));
        }
        if self.any_depth {
            return (1..=n).any(|k| usable(k) && self.match_segs(&self.segs, &comps[..k]));
        }
        let m = self.segs.len();
        m <= n && usable(m) && self.match_segs(&self.segs, &comps[..m])
    }

    /// Whether the pattern might match some path strictly below the directory `dir`.
    /// Conservative: `true` when unsure. Used to decide whether a walk may skip a directory.
    pub(crate) fn may_match_below(&self, dir: &[&str]) -> bool {
        if !self.anchored || self.any_depth {
            return true;
        }
        let m = self.segs.len();
        if m <= dir.len() {
            // The pattern can only match `dir` itself or one of its ancestors, which makes it
            // match everything below as well.
            return self.match_segs(&self.segs, &dir[..m]);
        }
        self.segs
            .iter()
            .zip(dir)
            .all(|(seg, c)| seg.matches(c, self.fold_case))
    }

    fn match_segs(&self, segs: &[Seg], comps: &[&str]) -> bool {
        match segs.split_first() {
            None => comps.is_empty(),
            Some((Seg::AnyDepth, rest)) => {
                (0..=comps.len()).any(|i| self.match_segs(rest, &comps[i..]))
            }
            Some((seg, rest)) => comps.split_first().is_some_and(|(c, tail)| {
                seg.matches(c, self.fold_case) && self.match_segs(rest, tail)
            }),
        }
    }
}

impl Seg {
    fn parse(text: &str) -> Self {
        if text == "**" {
            return Self::AnyDepth;
        }
        let chars: Vec<char> = text.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '\\' => {
                    toks.push(Tok::Char(chars.get(i).copied().unwrap_or('\\')));
                    i += 1;
                }
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                }
                '?' => toks.push(Tok::Any),
                '[' => match parse_class(&chars[i..]) {
                    Some((tok, used)) => {
                        toks.push(tok);
                        i += used;
                    }
                    None => toks.push(Tok::Char('[')),
                },
                c => toks.push(Tok::Char(c)),
            }
        }
        let literal: Option<String> = toks
            .iter()
            .map(|t| match t {
                Tok::Char(c) => Some(*c),
                _ => None,
            })
            .collect();
        match literal {
            Some(literal) => Self::Literal(literal),
            None => Self::Glob(toks),
        }
    }

    fn matches(&self, text: &str, fold_case: bool) -> bool {
        match self {
            Self::Literal(lit) if fold_case => lit.eq_ignore_ascii_case(text),
            Self::Literal(lit) => lit == text,
            Self::Glob(toks) => glob_match(toks, text, fold_case),
            Self::AnyDepth => true,
        }
    }
}

/// Parses a `[...]` class from the characters after its opening `[`; returns the token and
/// how many characters (including the closing `]`) it used, or `None` if it is never closed.
fn parse_class(chars: &[char]) -> Option<(Tok, usize)> {
    let mut i = 0;
    let negated = matches!(chars.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let start = i;
    let mut ranges = Vec::new();
    loop {
        let mut c = *chars.get(i)?;
        // A `]` right after the opening bracket is a literal member, not the end.
        if c == ']' && i > start {
            return Some((Tok::Class { negated, ranges }, i + 1));
        }
        if c == '\\' {
            i += 1;
            c = *chars.get(i)?;
        }
        i += 1;
        // `a-z` is a range; a `-` right before the closing `]` is a literal member.
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|n| *n != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i)?;
                i += 1;
            }
            ranges.push((c, hi));
        } else {
            ranges.push((c, c));
        }
    }
}

impl Tok {
    fn matches(&self, c: char, fold_case: bool) -> bool {
        let eq = |a: char, b: char| a == b || (fold_case && a.eq_ignore_ascii_case(&b));
        match self {
            Self::Char(p) => eq(*p, c),
            Self::Any => true,
            Self::Star => false,
            Self::Class { negated, ranges } => {
                let lower = c.to_ascii_lowercase();
                let upper = c.to_ascii_uppercase();
                let hit = ranges.iter().any(|&(lo, hi)| {
                    (lo..=hi).contains(&c)
                        || (fold_case && ((lo..=hi).contains(&lower) || (lo..=hi).contains(&upper)))
                });
                hit != *negated
            }
        }
    }
}

/// Matches one component against glob tokens, backtracking only to the last `*`.
fn glob_match(toks: &[Tok], text: &str, fold_case: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    // Position after the last `*` and the text index it is currently assumed to cover up to.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(tok) = toks.get(p) {
            if *tok == Tok::Star {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            if let Some(c) = text[t..].chars().next()
                && tok.matches(c, fold_case)
            {
                p += 1;
                t += c.len_utf8();
                continue;
            }
        } else if t == text.len() {
            return true;
        }
        match star {
            Some((sp, st)) if st < text.len() => {
                let next = st + text[st..].chars().next().map_or(1, char::len_utf8);
                star = Some((sp, next));
                p = sp;
                t = next;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        let comps: Vec<&str> = path.split('/').collect();
        Pattern::parse(pattern, false)
            .unwrap()
            .matches(&comps, false)
    }

    #[test]
    fn component_patterns_match_any_component() {
        assert!(m("node_modules", "node_modules/a/b.js"));
        assert!(m("node_modules", "pkg/node_modules/a.js"));
        assert!(m("node_modules", "node_modules"));
        assert!(!m("node_modules", "node_modules2/a.js"));
        assert!(m("*.log", "a/b/debug.log"));
        assert!(!m("*.log", "a/b/debug.logs"));
        assert!(m("._*", "src/._Icon"));
        assert!(m("fil?.txt", "file.txt"));
        assert!(!m("fil?.txt", "fil.txt"));
        assert!(m("[abc].rs", "src/b.rs"));
        assert!(!m("[!abc].rs", "src/b.rs"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("é?", "dir/éa"));
    }

    #[test]
    fn slash_patterns_are_anchored_prefixes_or_globs() {
        assert!(m(".yarn/cache", ".yarn/cache/x.zip"));
        assert!(!m(".yarn/cache", "pkg/.yarn/cache/x.zip"));
        assert!(m("apps/*/.build", "apps/web/.build/debug/x"));
        assert!(!m("apps/*/.build", "apps/web/src/.buildx"));
        assert!(m("src/*.rs", "src/main.rs"));
        assert!(!m("src/*.rs", "src/bin/main.rs"));
        assert!(m("/root.txt", "root.txt"));
        assert!(!m("/root.txt", "sub/root.txt"));
        assert!(m("docs/**/*.png", "docs/a/b/c.png"));
        assert!(m("docs/**/*.png", "docs/c.png"));
        assert!(m("**/gen", "a/b/gen/x.rs"));
    }

    #[test]
    fn trailing_slash_means_directory() {
        let p = Pattern::parse("build/", false).unwrap();
        assert!(p.matches(&["build", "x.o"], false));
        assert!(p.matches(&["build"], true));
        assert!(!p.matches(&["build"], false));
    }

    #[test]
    fn escapes_and_unclosed_classes_are_literal() {
        assert!(m("\\*star", "*star"));
        assert!(!m("\\*star", "xstar"));
        assert!(m("a[b", "a[b"));
        assert!(m("[]x]", "]"));
        assert!(m("[a-]", "-"));
    }

    #[test]
    fn fold_case_is_ascii_case_insensitive() {
        let p = Pattern::parse(".crabbox/env", true).unwrap();
        assert!(p.matches(&[".CRABBOX", "Env", "x"], false));
        let g = Pattern::parse("*.LOG", true).unwrap();
        assert!(g.matches(&["a.log"], false));
    }

    #[test]
    fn may_match_below_prunes_unrelated_directories() {
        let p = Pattern::parse("keep/this/file", false).unwrap();
        assert!(p.may_match_below(&["keep"]));
        assert!(p.may_match_below(&["keep", "this"]));
        assert!(!p.may_match_below(&["other"]));
        assert!(
            Pattern::parse("name", false)
                .unwrap()
                .may_match_below(&["x"])
        );
    }
}

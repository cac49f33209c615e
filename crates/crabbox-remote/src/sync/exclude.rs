//! Which paths a sync leaves out: the ordered exclude rules (built-ins, `sync.exclude`, the
//! root `.crabboxignore`, then Crabbox's protected runtime paths) and the optional
//! `sync.include` whitelist.
//!
//! Every rule is tested against the whole path and the last matching rule wins, so `!pattern`
//! re-includes what an earlier rule excluded, even below an excluded directory. Protected rules
//! come last, match case-insensitively and cannot be negated, so nothing re-includes them.

use std::fmt;
use std::path::Path;

use super::SyncError;
use super::glob::Pattern;

/// Built-in excludes (spec/cli-dataplane.md §4.8 step 2).
pub const BUILTIN_EXCLUDES: &[&str] = &[
    ".git",
    "._*",
    "node_modules",
    ".ignored",
    ".turbo",
    ".next",
    ".vite",
    ".parcel-cache",
    ".rollup.cache",
    "dist",
    "dist-runtime",
    "coverage",
    "playwright-report",
    "test-results",
    ".cache",
    ".tmp",
    ".local",
    ".swiftpm",
    ".build",
    "apps/*/.build",
    ".pnpm-store",
    ".npm",
    ".yarn/cache",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".gradle",
    "target",
];

/// Built-ins that are also common names for real sources, so they never drop a git-tracked
/// file: such files stay in the manifest and are reported as protected tracked files.
pub const AMBIGUOUS_BUILTINS: &[&str] = &[
    "dist",
    "dist-runtime",
    "coverage",
    "playwright-report",
    "test-results",
    ".build",
    "apps/*/.build",
    "target",
];

/// Crabbox's own runtime paths: always excluded, whatever the case, never re-included.
pub const PROTECTED_EXCLUDES: &[&str] = &[
    ".crabbox/env",
    ".crabbox/scripts",
    ".crabbox/logs",
    ".crabbox/captures",
    ".crabbox/runs",
];

/// The file under the sync root whose lines are extra exclude rules.
pub const CRABBOXIGNORE: &str = ".crabboxignore";

/// Where a rule came from; part of the fingerprint as `origin:pattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOrigin {
    Builtin,
    Config,
    Crabboxignore,
    Protected,
}

impl RuleOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Config => "config",
            Self::Crabboxignore => "crabboxignore",
            Self::Protected => "protected",
        }
    }
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One exclude (or, with `!`, re-include) rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludeRule {
    origin: RuleOrigin,
    /// The rule as written, including a leading `!` or `\!`.
    text: String,
    negated: bool,
    ambiguous: bool,
    pattern: Pattern,
}

impl ExcludeRule {
    fn parse(origin: RuleOrigin, line: &str) -> Option<Self> {
        let text = line.trim();
        let (negated, body) = match text.strip_prefix('!') {
            Some(rest) if origin != RuleOrigin::Protected => (true, rest),
            _ => (false, text),
        };
        let pattern = Pattern::parse(body, origin == RuleOrigin::Protected)?;
        Some(Self {
            origin,
            text: text.to_owned(),
            negated,
            ambiguous: origin == RuleOrigin::Builtin && AMBIGUOUS_BUILTINS.contains(&text),
            pattern,
        })
    }

    pub fn origin(&self) -> RuleOrigin {
        self.origin
    }

    /// The rule as written (`dist`, `!keep.log`, `\!literal`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` re-include rule.
    pub fn is_negated(&self) -> bool {
        self.negated
    }
}

impl fmt::Display for ExcludeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin, self.text)
    }
}

/// What the rules say about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    Included,
    Excluded(&'a ExcludeRule),
    /// A tracked file that the given ambiguous built-in would have dropped; it is synced.
    KeptTracked(&'a ExcludeRule),
}

/// The ordered exclude rules of one sync root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludeRules {
    rules: Vec<ExcludeRule>,
}

impl ExcludeRules {
    /// Built-ins, then `config` (`sync.exclude`), then `crabboxignore` lines (blank lines and
    /// `#` comments skipped), then the protected paths.
    pub fn new(config: &[String], crabboxignore: &str) -> Self {
        let builtin = BUILTIN_EXCLUDES.iter().map(|p| (RuleOrigin::Builtin, *p));
        let config = config.iter().map(|p| (RuleOrigin::Config, p.as_str()));
        let ignore = crabboxignore
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|l| (RuleOrigin::Crabboxignore, l));
        let protected = PROTECTED_EXCLUDES
            .iter()
            .map(|p| (RuleOrigin::Protected, *p));
        let rules = builtin
            .chain(config)
            .chain(ignore)
            .chain(protected)
            .filter_map(|(origin, line)| ExcludeRule::parse(origin, line))
            .collect();
        Self { rules }
    }

    /// Like [`ExcludeRules::new`], reading `<root>/.crabboxignore` if it exists.
    pub fn load(root: &Path, config: &[String]) -> Result<Self, SyncError> {
        let path = root.join(CRABBOXIGNORE);
        let ignore = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(SyncError::io(path, e)),
        };
        Ok(Self::new(config, &ignore))
    }

    pub fn rules(&self) -> &[ExcludeRule] {
        &self.rules
    }

    /// Whether an untracked path (or a directory, during a walk) is left out.
    pub fn is_excluded(&self, path: &str, is_dir: bool) -> bool {
        let comps: Vec<&str> = path.split('/').collect();
        matches!(self.verdict_of(&comps, is_dir, false), Verdict::Excluded(_))
    }

    /// The verdict for `path`; `tracked` files survive the ambiguous built-ins.
    pub fn verdict(&self, path: &str, is_dir: bool, tracked: bool) -> Verdict<'_> {
        let comps: Vec<&str> = path.split('/').collect();
        self.verdict_of(&comps, is_dir, tracked)
    }

    pub(crate) fn verdict_of(&self, comps: &[&str], is_dir: bool, tracked: bool) -> Verdict<'_> {
        // Walking backwards, the first matching rule is the last match in order.
        let mut shadowed = None;
        for rule in self.rules.iter().rev() {
            if !rule.pattern.matches(comps, is_dir) {
                continue;
            }
            if tracked && rule.ambiguous {
                shadowed.get_or_insert(rule);
                continue;
            }
            if !rule.negated {
                return Verdict::Excluded(rule);
            }
            break;
        }
        shadowed.map_or(Verdict::Included, Verdict::KeptTracked)
    }

    /// Whether a walk may skip the directory `dir` entirely: it is excluded and no later `!`
    /// rule could re-include anything below it. (`is_excluded(dir, true)` alone is not enough
    /// when a rule like `!target/keep` follows.)
    pub fn can_prune_dir(&self, dir: &str) -> bool {
        let comps: Vec<&str> = dir.split('/').collect();
        self.prunes_dir(&comps)
    }

    pub(crate) fn prunes_dir(&self, comps: &[&str]) -> bool {
        let Some(deciding) = self
            .rules
            .iter()
            .rposition(|r| r.pattern.matches(comps, true))
        else {
            return false;
        };
        !self.rules[deciding].negated
            && self.rules[deciding + 1..]
                .iter()
                .all(|r| !r.negated || !r.pattern.may_match_below(comps))
    }
}

/// The `sync.include` whitelist: when non-empty, only paths matching one of its patterns are
/// synced (excludes still apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncludeRules {
    patterns: Vec<(String, Pattern)>,
}

impl IncludeRules {
    pub fn new(patterns: &[String]) -> Self {
        let patterns = patterns
            .iter()
            .filter_map(|p| Some((p.trim().to_owned(), Pattern::parse(p.trim(), false)?)))
            .collect();
        Self { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as written (for the fingerprint).
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|(text, _)| text.as_str())
    }

    /// Whether a file is in scope (always, for an empty whitelist).
    pub fn matches(&self, path: &str) -> bool {
        let comps: Vec<&str> = path.split('/').collect();
        self.matches_comps(&comps, false)
    }

    pub(crate) fn matches_comps(&self, comps: &[&str], is_dir: bool) -> bool {
        self.is_empty() || self.patterns.iter().any(|(_, p)| p.matches(comps, is_dir))
    }

    /// Whether a walk has to look inside the directory `comps`.
    pub(crate) fn may_contain(&self, comps: &[&str]) -> bool {
        self.is_empty()
            || self
                .patterns
                .iter()
                .any(|(_, p)| p.matches(comps, true) || p.may_match_below(comps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(config: &[&str], ignore: &str) -> ExcludeRules {
        let config: Vec<String> = config.iter().map(|s| (*s).to_owned()).collect();
        ExcludeRules::new(&config, ignore)
    }

    #[test]
    fn builtins_match_components_and_prefixes() {
        let r = rules(&[], "");
        assert!(r.is_excluded("node_modules/x/y.js", false));
        assert!(r.is_excluded("packages/a/node_modules/y.js", false));
        assert!(r.is_excluded("src/._Icon", false));
        assert!(r.is_excluded(".yarn/cache/pkg.zip", false));
        assert!(!r.is_excluded("pkg/.yarn/cache/pkg.zip", false));
        assert!(r.is_excluded("apps/web/.build/out", false));
        assert!(r.is_excluded(".git", true));
        assert!(!r.is_excluded("src/main.rs", false));
        assert!(!r.is_excluded("distance.txt", false));
    }

    #[test]
    fn last_match_wins_and_bang_re_includes() {
        let r = rules(
            &["*.log", "!keep.log"],
            "# comment\n\nkeep.log\n!node_modules/pkg\n",
        );
        assert!(r.is_excluded("a/debug.log", false));
        // .crabboxignore comes after config, so it excludes keep.log again.
        assert!(r.is_excluded("keep.log", false));
        let r = rules(&["*.log", "!keep.log"], "");
        assert!(!r.is_excluded("keep.log", false));
        assert!(!r.is_excluded("sub/keep.log", false));
        let r = rules(&[], "!node_modules/pkg\n");
        assert!(!r.is_excluded("node_modules/pkg/index.js", false));
        assert!(r.is_excluded("node_modules/other/index.js", false));
    }

    #[test]
    fn escaped_bang_is_a_literal_name() {
        let r = rules(&["\\!important"], "");
        assert!(r.is_excluded("!important", false));
        assert!(r.is_excluded("docs/!important", false));
        assert!(!r.is_excluded("important", false));
        assert!(!r.rules().last().unwrap().is_negated());
    }

    #[test]
    fn protected_paths_cannot_be_re_included_and_ignore_case() {
        let r = rules(&["!.crabbox/env", "!.crabbox"], "!.crabbox/logs/\n");
        assert!(r.is_excluded(".crabbox/env", false));
        assert!(r.is_excluded(".crabbox/env/secret", false));
        assert!(r.is_excluded(".crabbox/logs/run.log", false));
        assert!(r.is_excluded(".CRABBOX/Env/secret", false));
        assert!(r.is_excluded(".Crabbox/RUNS/x", false));
        assert!(!r.is_excluded(".crabbox/config.yaml", false));
        assert!(matches!(
            r.verdict(".crabbox/env/x", false, true),
            Verdict::Excluded(rule) if rule.origin() == RuleOrigin::Protected
        ));
    }

    #[test]
    fn ambiguous_builtins_keep_tracked_files_but_user_rules_do_not() {
        let r = rules(&[], "");
        match r.verdict("dist/x.js", false, true) {
            Verdict::KeptTracked(rule) => assert_eq!(rule.text(), "dist"),
            other => panic!("tracked dist/x.js: {other:?}"),
        }
        assert!(matches!(
            r.verdict("dist/y.js", false, false),
            Verdict::Excluded(_)
        ));
        assert!(matches!(
            r.verdict("apps/web/.build/x", false, true),
            Verdict::KeptTracked(_)
        ));
        // Unambiguous built-ins still drop tracked files, even under an ambiguous one.
        assert!(matches!(
            r.verdict("dist/node_modules/x.js", false, true),
            Verdict::Excluded(rule) if rule.text() == "node_modules"
        ));
        assert!(matches!(
            r.verdict("node_modules/dist/x.js", false, true),
            Verdict::Excluded(rule) if rule.text() == "node_modules"
        ));
        let user = rules(&["dist"], "");
        assert!(matches!(
            user.verdict("dist/x.js", false, true),
            Verdict::Excluded(rule) if rule.origin() == RuleOrigin::Config
        ));
        let reincluded = rules(&["!dist"], "");
        assert_eq!(
            reincluded.verdict("dist/x.js", false, true),
            Verdict::Included
        );
    }

    #[test]
    fn rules_describe_origin_and_pattern() {
        let r = rules(&["!keep"], "tmp/\n");
        let lines: Vec<String> = r.rules().iter().map(ToString::to_string).collect();
        assert_eq!(lines[0], "builtin:.git");
        assert!(lines.contains(&"config:!keep".to_owned()));
        assert!(lines.contains(&"crabboxignore:tmp/".to_owned()));
        assert_eq!(lines.last().unwrap(), "protected:.crabbox/runs");
    }

    #[test]
    fn pruning_respects_later_re_includes() {
        let r = rules(&[], "");
        assert!(r.can_prune_dir("packages/app/node_modules"));
        assert!(r.prunes_dir(&["node_modules"]));
        assert!(!r.prunes_dir(&["src"]));
        let r = rules(&["!node_modules/keep"], "");
        assert!(!r.prunes_dir(&["node_modules"]));
        assert!(r.prunes_dir(&["target"]));
        let r = rules(&["!*.keep"], "");
        assert!(!r.prunes_dir(&["target"]));
        assert!(r.prunes_dir(&[".crabbox", "env"]));
    }

    #[test]
    fn include_whitelist() {
        let inc = IncludeRules::new(&["src".to_owned(), "Cargo.*".to_owned()]);
        assert!(inc.matches("src/main.rs"));
        assert!(inc.matches("Cargo.toml"));
        assert!(!inc.matches("docs/readme.md"));
        assert!(inc.may_contain(&["crates"]));
        let anchored = IncludeRules::new(&["crates/core".to_owned()]);
        assert!(anchored.may_contain(&["crates"]));
        assert!(!anchored.may_contain(&["docs"]));
        assert!(IncludeRules::new(&[]).matches("anything"));
    }
}

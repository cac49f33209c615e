//! The command line `crabbox run` runs remotely: plain words, or one shell string when they
//! hold shell syntax; and the environment variables forwarded to it.

const SHELL_OPERATORS: &[&str] = &["&&", "||", ";", "|", ">", ">>", "<", "2>", "2>>"];

fn is_assignment(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(name, _)| valid_env_name(name))
}

/// Decides argv vs shell mode (spec §4.10 step 6) and returns the words to send.
pub fn command_words(argv: &[String], force_shell: bool) -> (bool, Vec<String>) {
    use crabbox_remote::quote::sh_quote;
    if force_shell {
        return (true, argv.to_vec());
    }
    if argv.len() == 1 && argv[0].chars().any(|c| " \t\n&|;<>*$`\\()".contains(c)) {
        return (true, argv.to_vec());
    }
    let leading_assignment = argv.first().is_some_and(|w| is_assignment(w));
    let has_operator = argv.iter().any(|w| SHELL_OPERATORS.contains(&w.as_str()));
    if leading_assignment || has_operator {
        let mut seen_command = false;
        let words = argv
            .iter()
            .map(|w| {
                if SHELL_OPERATORS.contains(&w.as_str()) {
                    seen_command = false;
                    w.clone()
                } else if !seen_command && is_assignment(w) {
                    let (k, v) = w.split_once('=').expect("assignment");
                    format!("{k}={}", sh_quote(v))
                } else {
                    seen_command = true;
                    sh_quote(w)
                }
            })
            .collect();
        return (true, words);
    }
    (false, argv.to_vec())
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Local variables selected by the allowlist (exact names or `PREFIX*`).
pub fn forwarded_env(
    allow: &[String],
    vars: impl Iterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .filter(|(name, _)| {
            valid_env_name(name)
                && allow.iter().any(|pat| match pat.strip_suffix('*') {
                    Some("") => false,
                    Some(prefix) => name.starts_with(prefix),
                    None => pat == name,
                })
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn shell_detection() {
        assert_eq!(
            command_words(&s(&["cargo", "test"]), false),
            (false, s(&["cargo", "test"]))
        );
        assert_eq!(
            command_words(&s(&["echo hi | wc -c"]), false),
            (true, s(&["echo hi | wc -c"]))
        );
        assert_eq!(
            command_words(&s(&["FOO=a b", "env"]), false),
            (true, s(&["FOO='a b'", "env"]))
        );
        assert_eq!(
            command_words(&s(&["make", "&&", "echo", "a b"]), false),
            (true, s(&["make", "&&", "echo", "'a b'"]))
        );
    }

    #[test]
    fn env_allowlist() {
        let vars = vec![
            ("CI".into(), "1".into()),
            ("NPM_TOKEN".into(), "x".into()),
            ("NODE_OPTIONS".into(), "--x".into()),
            ("OTHER".into(), "y".into()),
        ];
        let out = forwarded_env(&s(&["CI", "NODE_*", "*"]), vars.into_iter());
        assert_eq!(
            out,
            vec![
                ("CI".to_owned(), "1".to_owned()),
                ("NODE_OPTIONS".to_owned(), "--x".to_owned())
            ]
        );
    }
}

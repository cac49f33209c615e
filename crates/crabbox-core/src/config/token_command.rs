//! `CRABBOX_COORDINATOR_TOKEN_COMMAND` (spec/cli-dataplane.md §3.2, §5.2): a JSON argv array
//! naming a program whose stdout is the coordinator token. It is read from the environment
//! only, never from a config file: a file, least of all a cloned repository's, must not be able
//! to make Crabbox run a program.

use std::collections::BTreeMap;

use super::error::{ConfigError, ValueError};
use super::origin::Origin;

/// The variable that names the token command.
pub const TOKEN_COMMAND_ENV: &str = "CRABBOX_COORDINATOR_TOKEN_COMMAND";

/// Reads the token command from the environment: `None` when unset or blank.
pub(crate) fn from_env(
    vars: &BTreeMap<String, String>,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(text) = vars
        .get(TOKEN_COMMAND_ENV)
        .map(|text| text.trim())
        .filter(|text| !text.is_empty())
    else {
        return Ok(None);
    };
    parse(text)
        .map(Some)
        .map_err(|problem| ConfigError::InvalidValue {
            key: "coordinator token command".to_owned(),
            origin: Origin::Env(TOKEN_COMMAND_ENV.to_owned()),
            problem,
        })
}

/// Parses and checks the argv: a non-empty array of non-blank single-line strings. The value is
/// never quoted back in the error, in case a token was pasted here by mistake.
fn parse(text: &str) -> Result<Vec<String>, ValueError> {
    let argv: Vec<String> = serde_json::from_str(text).map_err(|_| ValueError::NotArgv)?;
    let valid = !argv.is_empty()
        && argv
            .iter()
            .all(|arg| !arg.trim().is_empty() && !arg.contains(['\r', '\n', '\0']));
    if valid {
        Ok(argv)
    } else {
        Err(ValueError::NotArgv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(value: &str) -> BTreeMap<String, String> {
        [(TOKEN_COMMAND_ENV.to_owned(), value.to_owned())].into()
    }

    #[test]
    fn a_json_argv_array_is_required() {
        assert_eq!(
            from_env(&env(r#"["op", "read", "op://vault/crabbox/token"]"#)).unwrap(),
            Some(vec![
                "op".to_owned(),
                "read".to_owned(),
                "op://vault/crabbox/token".to_owned()
            ])
        );
        assert_eq!(from_env(&env("  ")).unwrap(), None);
        assert_eq!(from_env(&BTreeMap::new()).unwrap(), None);
        for bad in [
            "op read token",
            "[]",
            r#"["op", ""]"#,
            r#"["op", "a\nb"]"#,
            r#"{"cmd": "op"}"#,
            "cbxu_pasted-token",
        ] {
            let err = from_env(&env(bad)).unwrap_err().to_string();
            assert!(
                err.contains("env CRABBOX_COORDINATOR_TOKEN_COMMAND") && err.contains("JSON array"),
                "{err}"
            );
            assert!(!err.contains("pasted"), "the value is never echoed: {err}");
        }
    }
}

//! The rendered script, read the way PowerShell would read its literals, and Azure's and
//! EC2's wrappers around it.

use super::*;

const KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDcrabboxleasekey crabbox cbx_abcdef123456";

fn base<'a>(user: &'a str, public_key: &'a str, work_root: &'a str) -> WindowsBootstrap<'a> {
    WindowsBootstrap {
        user,
        public_key,
        work_root,
        ssh_ports: &[2222, 22],
    }
}

fn render() -> String {
    base("crabbox", KEY, DEFAULT_WORK_ROOT).render().unwrap()
}

/// The value of the single-quoted literal `line` starts with, as PowerShell reads it (`''` is
/// one quote), and what follows the literal on the line.
fn read_literal(line: &str) -> (String, &str) {
    let body = line.strip_prefix('\'').expect("a single-quoted literal");
    let mut value = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|(_, next)| *next == '\'') {
                chars.next();
            } else {
                return (value, &body[at + 1..]);
            }
        }
        value.push(c);
    }
    panic!("unterminated literal in {line}");
}

/// The value `$variable` is set to at the top of the script, after checking that nothing
/// follows its literal.
fn assigned(script: &str, variable: &str) -> String {
    let prefix = format!("${variable} = ");
    let line = script
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no ${variable}"));
    let (value, rest) = read_literal(line);
    assert_eq!(rest, "", "${variable} breaks out of its literal");
    value
}

/// The text of the single-quoted here-string assigned to `$variable`.
fn here_string<'a>(script: &'a str, variable: &str) -> &'a str {
    let open = format!("${variable} = @'\n");
    let start = script.find(&open).unwrap() + open.len();
    let end = start + script[start..].find("\n'@\n").unwrap();
    &script[start..end]
}

fn position(script: &str, needle: &str) -> usize {
    script
        .find(needle)
        .unwrap_or_else(|| panic!("no {needle:?} in the script"))
}

#[test]
fn the_whole_script() {
    let script = render();
    insta::assert_snapshot!(script);
    assert!(script.is_ascii());
    assert_eq!(assigned(&script, "user"), "crabbox");
    assert_eq!(assigned(&script, "publicKey"), KEY);
    assert_eq!(assigned(&script, "workRoot"), r"C:\crabbox");
    // Every opened block and call is closed (no literal in this input holds a bracket).
    for (open, close) in [('{', '}'), ('(', ')'), ('[', ']')] {
        assert_eq!(
            script.matches(open).count(),
            script.matches(close).count(),
            "{open}{close}"
        );
    }
    let opened = script.lines().filter(|l| l.ends_with("= @'")).count();
    let closed = script.lines().filter(|l| *l == "'@").count();
    assert_eq!((opened, closed), (2, 2));
}

#[test]
fn the_key_lands_only_in_administrators_authorized_keys() {
    let script = render();
    assert_eq!(script.matches(KEY).count(), 1);
    let uses: Vec<&str> = script
        .lines()
        .filter(|line| line.contains("$publicKey") && !line.starts_with("$publicKey = "))
        .collect();
    assert_eq!(
        uses,
        ["Set-Content -Encoding ASCII -LiteralPath $adminKeys -Value $publicKey"]
    );
    assert!(script.contains(
        "$adminKeys = Join-Path $sshData 'administrators_authorized_keys'\n\
         Set-Content -Encoding ASCII -LiteralPath $adminKeys -Value $publicKey\n\
         Protect-CrabboxFile $adminKeys\n"
    ));
    assert!(
        script.contains(
            "icacls.exe $Path /inheritance:r /grant '*S-1-5-32-544:F' /grant '*S-1-5-18:F'"
        )
    );
    // No per-user authorized_keys: sshd reads an administrator's keys from the one file.
    assert_eq!(
        script.matches("authorized_keys").count(),
        script.matches("administrators_authorized_keys").count()
    );
    let config = here_string(&script, "sshdConfig");
    assert!(config.ends_with(
        "Match Group administrators\n       \
         AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys"
    ));
    assert!(script.contains("Add-LocalGroupMember -SID 'S-1-5-32-544' -Member $user"));
}

#[test]
fn every_ssh_port_is_listened_on_and_let_in() {
    let bootstrap = WindowsBootstrap {
        ssh_ports: &[2222, 0, 22, 2222, 443],
        ..base("crabbox", KEY, DEFAULT_WORK_ROOT)
    };
    let script = bootstrap.render().unwrap();
    let config = here_string(&script, "sshdConfig");
    let ports: Vec<&str> = config.lines().filter(|l| l.starts_with("Port ")).collect();
    assert_eq!(ports, ["Port 2222", "Port 22", "Port 443"]);
    assert!(config.contains("\nPasswordAuthentication no\n"));
    let rules: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("Open-CrabboxPort "))
        .collect();
    assert_eq!(
        rules,
        [
            "Open-CrabboxPort 2222",
            "Open-CrabboxPort 22",
            "Open-CrabboxPort 443"
        ]
    );
    assert!(script.contains("$rule = \"crabbox-sshd-$Port\""));
    assert!(script.contains("-Direction Inbound -Protocol TCP -LocalPort $Port -Action Allow"));
    let none = WindowsBootstrap {
        ssh_ports: &[0],
        ..base("crabbox", KEY, DEFAULT_WORK_ROOT)
    };
    assert_eq!(none.render(), Err(WindowsBootstrapError::NoPorts));
}

#[test]
fn a_quote_in_a_value_stays_inside_its_literal() {
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI it's me'; Remove-Item C:\\ -Recurse; '";
    let root = r"C:\O'Brien's $(work) `x`";
    let script = base("crabbox", key, root).render().unwrap();
    assert_eq!(assigned(&script, "publicKey"), key);
    assert_eq!(assigned(&script, "workRoot"), root);
    // The ready script, a literal inside a literal, still reads the same work root.
    let ready = here_string(&script, "ready");
    let line = ready
        .lines()
        .find_map(|l| l.strip_prefix("$probe = Join-Path "))
        .unwrap();
    let (value, rest) = read_literal(line);
    assert_eq!(value, root);
    assert_eq!(rest, " ('.crabbox-ready-' + [guid]::NewGuid())");
}

#[test]
fn ps_quote_doubles_every_kind_of_single_quote() {
    assert_eq!(ps_quote(""), "''");
    assert_eq!(ps_quote("a b $c `d"), "'a b $c `d'");
    assert_eq!(ps_quote("it's"), "'it''s'");
    assert_eq!(
        ps_quote("\u{2019}x\u{2018}"),
        "'\u{2019}\u{2019}x\u{2018}\u{2018}'"
    );
}

#[test]
fn values_no_literal_can_carry_are_refused() {
    let refused = |user: &str, key: &str, root: &str| base(user, key, root).render().unwrap_err();
    assert_eq!(
        refused("crab\nbox", KEY, DEFAULT_WORK_ROOT).to_string(),
        "ssh user contains a line break, a control character or a character outside ASCII: \
         \"crab\\nbox\""
    );
    for (key, what) in [
        (format!("{KEY}\nssh-rsa AAAA other"), "public key"),
        (format!("{KEY}\0"), "public key"),
        ("ssh-rsa AAAA caf\u{e9}".to_owned(), "public key"),
    ] {
        assert!(
            matches!(
                refused("crabbox", &key, DEFAULT_WORK_ROOT),
                WindowsBootstrapError::Unquotable { what: w, .. } if w == what
            ),
            "{key:?}"
        );
    }
    for root in ["C:\\work\r\n", "C:\\w\u{2011}ork", "C:\\a\tb"] {
        assert!(
            matches!(
                refused("crabbox", KEY, root),
                WindowsBootstrapError::Unquotable {
                    what: "work root",
                    ..
                }
            ),
            "{root:?}"
        );
    }
    for user in [
        "",
        "-x",
        "o'brien",
        "a b",
        "dom\\user",
        "a@b",
        &"a".repeat(21),
    ] {
        assert_eq!(
            refused(user, KEY, DEFAULT_WORK_ROOT),
            WindowsBootstrapError::User(user.into()),
            "{user}"
        );
    }
    for root in [
        "crabbox",
        "C:",
        "C:\\",
        "C:/crabbox",
        "\\\\server\\share",
        "C:\\crabbox\\",
        "C:\\a\\\\b",
        "C:\\a\\..\\b",
        "C:\\a\\.",
        "C:\\a:b",
        "C:\\a|b",
        "C:\\a\"b",
        "1:\\a",
    ] {
        assert_eq!(
            refused("crabbox", KEY, root),
            WindowsBootstrapError::WorkRoot(root.into()),
            "{root}"
        );
    }
    for key in ["", "AAAA", "not-a-key AAAA", "ssh-rsa"] {
        assert_eq!(
            refused("crabbox", key, DEFAULT_WORK_ROOT),
            WindowsBootstrapError::PublicKey(key.into()),
            "{key}"
        );
    }
    assert!(
        base("svc.runner-1", KEY, r"D:\ci\crab box")
            .render()
            .is_ok()
    );
}

#[test]
fn pinned_hashes_are_checked_before_anything_is_run_or_unpacked() {
    let script = render();
    assert_eq!(assigned(&script, "openSSHUrl"), OPENSSH.url);
    assert_eq!(assigned(&script, "openSSHSha256"), OPENSSH.sha256);
    assert_eq!(assigned(&script, "gitUrl"), GIT.url);
    assert_eq!(assigned(&script, "gitSha256"), GIT.sha256);
    for pinned in [&OPENSSH, &GIT] {
        assert_eq!(pinned.sha256.len(), 64);
        assert!(pinned.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(pinned.url.starts_with("https://github.com/"));
    }
    let check = position(
        &script,
        "  $actual = (Get-FileHash -Algorithm SHA256 -LiteralPath $Path).Hash\n  \
         if ($actual -ne $Sha256) {\n    \
         Remove-Item -Force -LiteralPath $Path\n    throw ",
    );
    assert!(check < position(&script, "Get-CrabboxPinned $openSSHUrl $zip $openSSHSha256"));
    assert!(
        position(&script, "Get-CrabboxPinned $openSSHUrl $zip $openSSHSha256")
            < position(&script, "Expand-Archive")
    );
    assert!(
        position(&script, "Get-CrabboxPinned $gitUrl $setup $gitSha256")
            < position(&script, "Start-Process")
    );
    // Each download is retried, and only the download.
    assert!(script.contains(
        "Invoke-CrabboxRetry { Invoke-WebRequest -UseBasicParsing -Uri $Uri -OutFile $Path }"
    ));
}

#[test]
fn readiness_waits_for_the_marker_the_bootstrap_writes_last() {
    let script = render();
    assert!(READY_CHECK.ends_with(&format!(" -File {READY_SCRIPT}")));
    assert_eq!(assigned(&script, "readyScript"), READY_SCRIPT);
    assert_eq!(assigned(&script, "marker"), BOOTSTRAPPED_MARKER);
    assert_eq!(assigned(&script, "log"), BOOTSTRAP_LOG);
    let ready = here_string(&script, "ready");
    assert!(ready.starts_with("$ErrorActionPreference = 'Stop'\ngit --version\n"));
    assert!(ready.contains(
        "if (-not (Test-Path -LiteralPath 'C:\\ProgramData\\crabbox\\setup-complete')) "
    ));
    assert!(ready.contains("$probe = Join-Path 'C:\\crabbox' "));
    let started = position(&script, "Restart-Service -Force -Name sshd");
    let marked = position(&script, "-LiteralPath $marker -Value");
    assert!(position(&script, "Open-CrabboxPort 22\n") < started);
    assert!(position(&script, "icacls.exe $workRoot") < started);
    assert!(started < marked);
    assert!(marked < position(&script, "& $readyScript\n"));
    assert!(position(&script, "Start-Transcript") < position(&script, "Get-LocalUser"));
}

#[test]
fn the_extension_runs_what_azure_wrote_from_custom_data() {
    let body = custom_script_extension("eastus");
    insta::assert_json_snapshot!(body);
    let command = body["properties"]["protectedSettings"]["commandToExecute"]
        .as_str()
        .unwrap();
    assert!(body["properties"].get("settings").is_none());
    assert!(command.contains(r"'AzureData\CustomData.bin'"));
    assert!(command.contains("-ExecutionPolicy Bypass -File $bootstrap"));
    // Whether the agent starts it through cmd.exe or not, nothing in it is cmd syntax.
    assert!(!command.contains(['&', '|', '<', '>', '^', '%']));
    assert_eq!(command.matches('"').count(), 2);
}

#[test]
fn ec2_user_data_runs_the_script_once() {
    let user_data = ec2_user_data("Write-Host 'hello'\n").unwrap();
    insta::assert_snapshot!(user_data);
    assert!(!user_data.contains("<persist>"));
    assert_eq!(
        ec2_user_data("x\n</PowerShell>\n"),
        Err(WindowsBootstrapError::UserDataTag)
    );
}

/// Azure takes at most 64 KiB of base64 custom data; EC2 at most 16 KiB of user data.
#[test]
fn the_script_fits_azure_custom_data_and_ec2_user_data() {
    let script = render();
    assert!(script.len().div_ceil(3) * 4 <= 65_535, "{}", script.len());
    assert!(ec2_user_data(&script).unwrap().len() <= 16 * 1024);
}

#[test]
fn admin_passwords_meet_azure_rules() {
    let passwords: Vec<String> = (0..2000)
        .map(|_| admin_password().expose().to_owned())
        .collect();
    for password in &passwords {
        assert!((12..=123).contains(&password.len()), "{password}");
        let classes = [
            password.chars().any(|c| c.is_ascii_uppercase()),
            password.chars().any(|c| c.is_ascii_lowercase()),
            password.chars().any(|c| c.is_ascii_digit()),
            password.chars().any(|c| c.is_ascii_punctuation()),
        ];
        assert!(classes.iter().filter(|c| **c).count() >= 3, "{password}");
        assert!(
            !password.contains(['"', '\'', '\\', '`', '$', '%', '&', '<', '>']),
            "{password}"
        );
    }
    let mut distinct = passwords.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), passwords.len());
    assert_eq!(format!("{:?}", admin_password()), "<redacted>");
}

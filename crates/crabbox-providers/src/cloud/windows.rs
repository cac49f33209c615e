//! The native Windows runner bootstrap (spec/providers.md §2.3 and §2.9), the Windows
//! counterpart of [`cloud_init`](super::cloud_init): a PowerShell script, run once as SYSTEM,
//! that installs OpenSSH for Windows and Git for Windows from pinned, hash-checked downloads,
//! creates the lease's local administrator with the lease's key, opens sshd's ports, creates
//! the work root, and leaves a ready script that readiness runs over SSH.
//!
//! Azure hands the script to the VM as `osProfile.customData` and runs it with the
//! Custom Script Extension ([`custom_script_extension`]); EC2 would run it as `<powershell>`
//! user data ([`ec2_user_data`]). Azure also insists on an administrator password even for a
//! VM reached only by key ([`admin_password`]).
//!
//! Every value from outside is a single-quoted PowerShell literal. Values no quoting can
//! carry are refused, and so is anything outside printable ASCII: PowerShell 5.1 reads a
//! `.ps1` without a byte-order mark as the machine's ANSI code page, where the bytes of some
//! UTF-8 characters read as the typographic quotes PowerShell also ends a literal at. Keeping
//! the script ASCII makes its meaning the same whatever encoding the host reads it in.

use std::fmt::Write as _;

use crabbox_core::config::Secret;
use serde_json::{Value, json};

/// The administrator Azure creates from the OS profile. Nobody logs in as it; the bootstrap
/// creates the lease's own user beside it.
pub const AZURE_ADMIN_USER: &str = "crabadmin";

/// Where the runner's work happens unless the config says otherwise.
pub const DEFAULT_WORK_ROOT: &str = r"C:\crabbox";

/// Where a Windows lease's commands run: the configured work root when it is a Windows path
/// (it has a drive), else [`DEFAULT_WORK_ROOT`] (the configured one is the POSIX default).
pub fn work_root(configured: &str) -> &str {
    if configured.contains(':') {
        configured
    } else {
        DEFAULT_WORK_ROOT
    }
}

/// The name of the Custom Script Extension resource on the VM.
pub const AZURE_EXTENSION_NAME: &str = "crabbox-bootstrap";

/// Written last by the bootstrap, so readiness never passes on a half-bootstrapped runner.
pub const BOOTSTRAPPED_MARKER: &str = r"C:\ProgramData\crabbox\setup-complete";

/// Runs the readiness checks; readiness probes it over SSH.
pub const READY_SCRIPT: &str = r"C:\ProgramData\crabbox\crabbox-ready.ps1";

/// The bootstrap's transcript, for a runner that never became ready.
pub const BOOTSTRAP_LOG: &str = r"C:\ProgramData\crabbox\bootstrap.log";

/// What a provider's readiness runs once SSH answers. sshd's default shell stays `cmd.exe`,
/// as Windows ships it: the data plane sends every command as one `powershell.exe` call, which
/// starts one PowerShell (not two) and passes stdin straight through for the sync's tar
/// stream. This line means the same to `cmd.exe` and to PowerShell, and exits with the ready
/// script's status.
pub const READY_CHECK: &str = r"powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -File C:\ProgramData\crabbox\crabbox-ready.ps1";

/// Copies what Azure wrote from `customData` (`%SystemDrive%\AzureData\CustomData.bin`) to a
/// `.ps1`, as `powershell.exe -File` runs nothing else, and runs it, exiting with its status so
/// that the extension fails when the bootstrap does.
const AZURE_RUN_CUSTOM_DATA: &str = "powershell.exe -NoProfile -ExecutionPolicy Bypass -Command \"\
     $bootstrap = Join-Path $env:SystemDrive 'AzureData\\crabbox-bootstrap.ps1'; \
     Copy-Item -Force -LiteralPath (Join-Path $env:SystemDrive 'AzureData\\CustomData.bin') -Destination $bootstrap; \
     powershell.exe -NoProfile -ExecutionPolicy Bypass -File $bootstrap; \
     exit $LASTEXITCODE\"";

/// A download the bootstrap refuses unless its SHA-256 matches.
struct Pinned {
    url: &'static str,
    sha256: &'static str,
    file_name: &'static str,
}

/// Win32-OpenSSH: Windows Server 2022 images do not carry sshd.
const OPENSSH: Pinned = Pinned {
    url: "https://github.com/PowerShell/Win32-OpenSSH/releases/download/v9.8.3.0p2-Preview/OpenSSH-Win64.zip",
    sha256: "0ca131f3a78f404dc819a6336606caec0db1663a692ccc3af1e90232706ada54",
    file_name: "OpenSSH-Win64.zip",
};

const GIT: Pinned = Pinned {
    url: "https://github.com/git-for-windows/git/releases/download/v2.52.0.windows.1/Git-2.52.0-64-bit.exe",
    sha256: "d8de7a3152266c8bb13577eab850ea1df6dccf8c2aa48be5b4a1c58b7190d62c",
    file_name: "Git-2.52.0-64-bit.exe",
};

/// What the bootstrap sets up.
#[derive(Debug, Clone, Copy)]
pub struct WindowsBootstrap<'a> {
    /// The local administrator the lease logs in as (not [`AZURE_ADMIN_USER`]).
    pub user: &'a str,
    /// The lease's public key (`ssh-rsa AAAA… comment`).
    pub public_key: &'a str,
    /// An absolute Windows path, like [`DEFAULT_WORK_ROOT`].
    pub work_root: &'a str,
    /// sshd listens on each, and the firewall lets each in.
    pub ssh_ports: &'a [u16],
}

/// A value the bootstrap cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowsBootstrapError {
    #[error(
        "ssh user {0:?} cannot be a Windows local user name (use letters, digits, `_`, `.` and `-`, starting with a letter or `_`, at most 20 characters)"
    )]
    User(String),
    #[error(
        "work root {0:?} must be an absolute Windows path below a drive root, like C:\\crabbox, without . or .. components, empty components or any of <>:\"/|?*"
    )]
    WorkRoot(String),
    #[error(
        "{what} contains a line break, a control character or a character outside ASCII: {value:?}"
    )]
    Unquotable { what: &'static str, value: String },
    #[error("the public key {0:?} is not one OpenSSH public key line")]
    PublicKey(String),
    #[error("no ssh port to listen on")]
    NoPorts,
    #[error("the script contains `</powershell>`, which would end the EC2 user data early")]
    UserDataTag,
}

impl WindowsBootstrap<'_> {
    /// The PowerShell script. It stops at the first failure, so the Custom Script Extension
    /// reports a failed bootstrap instead of a runner that never becomes ready. Every value is
    /// set once at the top; the sections after it are fixed text.
    pub fn render(&self) -> Result<String, WindowsBootstrapError> {
        let ports = self.check()?;
        let mut out = String::from(PRELUDE);
        for (variable, value) in [
            ("user", self.user),
            ("publicKey", self.public_key.trim()),
            ("workRoot", self.work_root),
            ("readyScript", READY_SCRIPT),
            ("marker", BOOTSTRAPPED_MARKER),
            ("log", BOOTSTRAP_LOG),
            ("openSSHUrl", OPENSSH.url),
            ("openSSHSha256", OPENSSH.sha256),
            ("openSSHZip", OPENSSH.file_name),
            ("gitUrl", GIT.url),
            ("gitSha256", GIT.sha256),
            ("gitSetup", GIT.file_name),
        ] {
            let _ = writeln!(out, "${variable} = {}", ps_quote(value));
        }
        out.push_str(FUNCTIONS);
        out.push_str(USER);
        out.push_str(OPENSSH_INSTALL);
        out.push_str("$sshdConfig = @'\n");
        for port in &ports {
            let _ = writeln!(out, "Port {port}");
        }
        out.push_str(SSHD_CONFIG);
        for port in &ports {
            let _ = writeln!(out, "Open-CrabboxPort {port}");
        }
        out.push_str(GIT_INSTALL);
        out.push_str("$ready = @'\n");
        out.push_str(&self.ready_script());
        out.push_str(FINISH);
        Ok(out)
    }

    /// Refuses what the script cannot carry; returns the ports, without zeros and repeats.
    fn check(&self) -> Result<Vec<u16>, WindowsBootstrapError> {
        for (what, value) in [
            ("ssh user", self.user),
            ("work root", self.work_root),
            ("public key", self.public_key.trim()),
        ] {
            if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                return Err(WindowsBootstrapError::Unquotable {
                    what,
                    value: value.to_owned(),
                });
            }
        }
        if !is_user_name(self.user) {
            return Err(WindowsBootstrapError::User(self.user.to_owned()));
        }
        if !is_work_root(self.work_root) {
            return Err(WindowsBootstrapError::WorkRoot(self.work_root.to_owned()));
        }
        let mut fields = self.public_key.split_whitespace();
        let kind_ok = fields.next().is_some_and(|kind| {
            ["ssh-", "ecdsa-", "sk-"]
                .iter()
                .any(|prefix| kind.starts_with(prefix))
        });
        if !kind_ok || fields.next().is_none() {
            return Err(WindowsBootstrapError::PublicKey(self.public_key.to_owned()));
        }
        let mut ports = Vec::new();
        for port in self.ssh_ports.iter().filter(|port| **port != 0) {
            if !ports.contains(port) {
                ports.push(*port);
            }
        }
        if ports.is_empty() {
            return Err(WindowsBootstrapError::NoPorts);
        }
        Ok(ports)
    }

    /// The ready script, ending in the line that closes the here-string it is written in.
    /// Native commands do not stop a PowerShell script when they fail, hence the exit-code
    /// checks. The work root is writable when a file can be written there: reading its ACL
    /// would not account for group membership or inherited denies.
    fn ready_script(&self) -> String {
        format!(
            "$ErrorActionPreference = 'Stop'\n\
             git --version\n\
             if ($LASTEXITCODE -ne 0) {{ throw 'git does not run' }}\n\
             tar --version | Out-Null\n\
             if ($LASTEXITCODE -ne 0) {{ throw 'tar does not run' }}\n\
             if (-not (Test-Path -LiteralPath {marker})) {{ throw 'the runner is not bootstrapped' }}\n\
             $probe = Join-Path {root} ('.crabbox-ready-' + [guid]::NewGuid())\n\
             [IO.File]::WriteAllText($probe, 'ready')\n\
             Remove-Item -Force -LiteralPath $probe\n\
             '@\n",
            marker = ps_quote(BOOTSTRAPPED_MARKER),
            root = ps_quote(self.work_root),
        )
    }
}

/// The body of the `Microsoft.Compute/virtualMachines/extensions` resource
/// ([`AZURE_EXTENSION_NAME`]) that runs the bootstrap Azure wrote from `customData`.
///
/// The command is in `protectedSettings` although it holds nothing secret: Azure returns
/// `settings` to anyone who can read the VM and the agent writes them to its logs, while
/// protected settings are encrypted to the VM and never returned. A later command that does
/// carry something (a restored snapshot's rehydrate script embeds the lease's key) then cannot
/// leak by being put where this one is. There is no `timestamp` in `settings`, which would
/// force a re-run when the same extension is PUT again: a new VM runs it once.
pub fn custom_script_extension(location: &str) -> Value {
    json!({
        "location": location,
        "properties": {
            "publisher": "Microsoft.Compute",
            "type": "CustomScriptExtension",
            "typeHandlerVersion": "1.10",
            "autoUpgradeMinorVersion": true,
            "protectedSettings": {"commandToExecute": AZURE_RUN_CUSTOM_DATA}
        }
    })
}

/// EC2 user data that runs `script` at first boot. Without `<persist>true</persist>`
/// `EC2Launch` runs it once: a runner is bootstrapped once, and a second run would reset the
/// user's password for nothing.
pub fn ec2_user_data(script: &str) -> Result<String, WindowsBootstrapError> {
    if script.to_ascii_lowercase().contains("</powershell>") {
        return Err(WindowsBootstrapError::UserDataTag);
    }
    Ok(format!("<powershell>\n{script}</powershell>\n"))
}

/// A password for [`AZURE_ADMIN_USER`]: Azure refuses a Windows VM without one, even when
/// nobody will use it. 24 characters with all four of Azure's classes (upper, lower, digit,
/// special; it asks for three of them, in 12 to 123 characters), drawn uniformly from the OS
/// random source. The specials are ones that need no quoting in JSON, cmd or a shell.
pub fn admin_password() -> Secret {
    const LEN: usize = 24;
    const ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#+-.=@_";
    // Bytes at or above the largest multiple of the alphabet's size would favour its start.
    let limit = 256 - 256 % ALPHABET.len();
    loop {
        let mut password = String::with_capacity(LEN);
        while password.len() < LEN {
            let mut bytes = [0_u8; 32];
            getrandom::fill(&mut bytes).expect("the OS random source is unavailable");
            for byte in bytes.map(usize::from) {
                if byte < limit && password.len() < LEN {
                    password.push(char::from(ALPHABET[byte % ALPHABET.len()]));
                }
            }
        }
        let classes: [fn(&char) -> bool; 4] = [
            char::is_ascii_uppercase,
            char::is_ascii_lowercase,
            char::is_ascii_digit,
            char::is_ascii_punctuation,
        ];
        if classes
            .iter()
            .all(|class| password.chars().any(|c| class(&c)))
        {
            return Secret::new(password);
        }
    }
}

/// A single-quoted PowerShell literal. Inside one only a quote is special, written twice;
/// PowerShell also takes the typographic single quotes (U+2018 to U+201B) as quotes, so they
/// are doubled too, although the values checked here are ASCII.
fn ps_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}'..='\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Letters, digits, `_`, `.` and `-`, starting with a letter or `_`: a subset of what Windows
/// allows (20 characters, none of `"/\[]:;|=,+*?<>@`) that also reads the same everywhere.
fn is_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 20
        && chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `X:\` and one or more components. Empty components are refused because a trailing `\`
/// breaks how PowerShell 5.1 quotes a path with spaces for `icacls`.
fn is_work_root(root: &str) -> bool {
    let Some(rest) = root.get(3..) else {
        return false;
    };
    let bytes = root.as_bytes();
    bytes[0].is_ascii_alphabetic()
        && &bytes[1..3] == b":\\"
        && rest.split('\\').all(|component| {
            !matches!(component, "" | "." | "..")
                && !component.contains(['<', '>', ':', '"', '/', '|', '?', '*'])
        })
}

/// Stop at the first error; `Invoke-WebRequest`'s progress bar slows downloads tenfold; .NET
/// on older images still offers TLS 1.0 to GitHub first.
const PRELUDE: &str = r"# Crabbox Windows runner bootstrap. Runs once, as SYSTEM.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
";

const FUNCTIONS: &str = r#"[IO.Directory]::CreateDirectory((Split-Path -Parent $log)) | Out-Null
Start-Transcript -Append -LiteralPath $log | Out-Null

# Downloads fail transiently on a VM that has just booted.
function Invoke-CrabboxRetry([scriptblock]$Action) {
  for ($attempt = 1; ; $attempt++) {
    try { & $Action; return }
    catch {
      if ($attempt -ge 8) { throw }
      Write-Host "attempt $attempt failed: $_"
      Start-Sleep -Seconds (5 * $attempt)
    }
  }
}

# A failing native command does not stop the script by itself.
function Assert-CrabboxExitCode([string]$What) {
  if ($LASTEXITCODE -ne 0) { throw "$What failed with exit code $LASTEXITCODE" }
}

# Nothing downloaded is run or unpacked unless its SHA-256 is the pinned one.
function Get-CrabboxPinned([string]$Uri, [string]$Path, [string]$Sha256) {
  Invoke-CrabboxRetry { Invoke-WebRequest -UseBasicParsing -Uri $Uri -OutFile $Path }
  $actual = (Get-FileHash -Algorithm SHA256 -LiteralPath $Path).Hash
  if ($actual -ne $Sha256) {
    Remove-Item -Force -LiteralPath $Path
    throw "SHA-256 of $Uri is $actual, not the pinned $Sha256"
  }
}

# Administrators and SYSTEM only, named by SID: group names are translated on localized images.
function Protect-CrabboxFile([string]$Path) {
  icacls.exe $Path /inheritance:r /grant '*S-1-5-32-544:F' /grant '*S-1-5-18:F' | Out-Null
  Assert-CrabboxExitCode "icacls $Path"
}

function Open-CrabboxPort([int]$Port) {
  $rule = "crabbox-sshd-$Port"
  if (-not (Get-NetFirewallRule -Name $rule -ErrorAction SilentlyContinue)) {
    New-NetFirewallRule -Name $rule -DisplayName "Crabbox OpenSSH $Port" -Direction Inbound -Protocol TCP -LocalPort $Port -Action Allow | Out-Null
  }
}
"#;

/// The password is random and never leaves the VM: the lease logs in by key, but Windows
/// refuses network logons to an account with a blank password. The group is named by SID, as
/// its name is translated on localized images.
const USER: &str = r"
$bytes = New-Object byte[] 24
[Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($bytes)
$password = ConvertTo-SecureString -AsPlainText -Force -String ('Cb1!' + [Convert]::ToBase64String($bytes))
if (Get-LocalUser -Name $user -ErrorAction SilentlyContinue) {
  Set-LocalUser -Name $user -Password $password -PasswordNeverExpires $true
} else {
  New-LocalUser -Name $user -Password $password -PasswordNeverExpires -AccountNeverExpires | Out-Null
}
try { Add-LocalGroupMember -SID 'S-1-5-32-544' -Member $user }
catch [Microsoft.PowerShell.Commands.MemberExistsException] { }
";

/// Installs sshd unless the image has it, then hands the lease's key to it. OpenSSH reads an
/// administrator's keys from one file (the `Match` block of the sshd config points there),
/// which it ignores unless only Administrators and SYSTEM can touch it.
const OPENSSH_INSTALL: &str = r#"
if (-not (Get-Service -Name sshd -ErrorAction SilentlyContinue)) {
  $zip = Join-Path $env:TEMP $openSSHZip
  Get-CrabboxPinned $openSSHUrl $zip $openSSHSha256
  Remove-Item -Recurse -Force -LiteralPath 'C:\Program Files\OpenSSH' -ErrorAction SilentlyContinue
  Expand-Archive -Force -LiteralPath $zip -DestinationPath 'C:\Program Files'
  Rename-Item -LiteralPath 'C:\Program Files\OpenSSH-Win64' -NewName 'OpenSSH'
  & 'C:\Program Files\OpenSSH\install-sshd.ps1'
}
$sshdExe = (Get-CimInstance -ClassName Win32_Service -Filter "Name='sshd'").PathName.Trim('"')
$openSSHDir = Split-Path -Parent $sshdExe

$sshData = Join-Path $env:ProgramData 'ssh'
[IO.Directory]::CreateDirectory($sshData) | Out-Null
$adminKeys = Join-Path $sshData 'administrators_authorized_keys'
Set-Content -Encoding ASCII -LiteralPath $adminKeys -Value $publicKey
Protect-CrabboxFile $adminKeys

"#;

/// The rest of the sshd config, after its `Port` lines. It is written whole, so nothing an
/// image shipped can turn passwords back on.
const SSHD_CONFIG: &str = r"PubkeyAuthentication yes
PasswordAuthentication no
HostKey __PROGRAMDATA__/ssh/ssh_host_ed25519_key
Subsystem sftp internal-sftp
Match Group administrators
       AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys
'@
Set-Content -Encoding ASCII -LiteralPath (Join-Path $sshData 'sshd_config') -Value $sshdConfig
& (Join-Path $openSSHDir 'ssh-keygen.exe') -A
Assert-CrabboxExitCode 'ssh-keygen -A'
$hostKey = Join-Path $sshData 'ssh_host_ed25519_key'
if (-not (Test-Path -LiteralPath $hostKey)) { throw 'ssh-keygen made no ed25519 host key' }
Protect-CrabboxFile $hostKey

";

/// Git's `usr\bin` brings the Unix tools its shell uses; it goes last on the `PATH`, so
/// Windows' own `tar` and `find` still win.
const GIT_INSTALL: &str = r#"
if (-not (Test-Path -LiteralPath 'C:\Program Files\Git\cmd\git.exe')) {
  $setup = Join-Path $env:TEMP $gitSetup
  Get-CrabboxPinned $gitUrl $setup $gitSha256
  $process = Start-Process -Wait -PassThru -FilePath $setup -ArgumentList '/VERYSILENT', '/NORESTART', '/NOCANCEL', '/SP-'
  if ($process.ExitCode -ne 0) { throw "Git for Windows setup failed with exit code $($process.ExitCode)" }
}
$machinePath = [Environment]::GetEnvironmentVariable('Path', 'Machine')
foreach ($dir in @($openSSHDir, 'C:\Program Files\Git\cmd', 'C:\Program Files\Git\usr\bin')) {
  if (($machinePath -split ';') -notcontains $dir) { $machinePath = "$machinePath;$dir" }
}
[Environment]::SetEnvironmentVariable('Path', $machinePath, 'Machine')
$env:Path = $machinePath

# The lease's user owns its work; everything made below the work root inherits the grant.
[IO.Directory]::CreateDirectory($workRoot) | Out-Null
$sid = (Get-LocalUser -Name $user).SID.Value
icacls.exe $workRoot /grant "*${sid}:(OI)(CI)F" | Out-Null
Assert-CrabboxExitCode 'icacls work root'

"#;

/// sshd starts once the `PATH` is final, as its sessions take it from the service. The marker
/// comes last, then the ready script runs once here, so a runner that could never pass
/// readiness fails its bootstrap (and the extension) instead of timing out later.
const FINISH: &str = r"Set-Content -Encoding ASCII -LiteralPath $readyScript -Value $ready

Set-Service -Name sshd -StartupType Automatic
Restart-Service -Force -Name sshd
if ((Get-Service -Name sshd).Status -ne 'Running') { throw 'sshd did not start' }
Set-Content -Encoding ASCII -LiteralPath $marker -Value (Get-Date).ToString('o')
& $readyScript
Write-Host 'crabbox bootstrap complete'
Stop-Transcript | Out-Null
";

#[cfg(test)]
mod tests;

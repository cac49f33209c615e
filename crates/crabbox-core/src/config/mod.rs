//! Layered configuration (spec/cli-dataplane.md §3): the key table, reading YAML files, env
//! vars and flags into checked values, precedence (flags > env > repo files > user file >
//! defaults) with the origin of every value, the credential trust rule, `config show` output
//! and the starter file `crabbox init` writes. Pure: callers read files and the environment.

mod error;
mod files;
mod keys;
mod layer;
mod model;
mod origin;
mod resolve;
mod secret;
mod show;
mod starter;
mod token_command;
mod value;

pub use error::{ConfigError, ValueError};

/// The runner user when none is configured (the cloud-init's `crabbox`).
pub const DEFAULT_SSH_USER: &str = "crabbox";
/// The POSIX work root when none is configured.
pub const DEFAULT_WORK_ROOT: &str = "/work/crabbox";
pub use files::{ConfigFiles, REPO_CONFIG_NAMES, config_files};
pub use keys::env_names;
pub use layer::FlagValue;
pub use model::{
    Architecture, AwsConfig, AzureConfig, BrokerMode, Capabilities, CapacityConfig, Config,
    CoordinatorConfig, HetznerConfig, Market, MarketFallback, SshConfig, StaticHostConfig,
    SyncConfig, TargetOs, WindowsMode,
};
pub use origin::Origin;
pub use resolve::{ConfigInputs, Resolved, resolve};
pub use secret::Secret;
pub use show::{render_show, show_json};
pub use starter::starter_repo_config;
pub use token_command::TOKEN_COMMAND_ENV;

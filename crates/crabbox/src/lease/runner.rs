//! Talking to a lease's runner: its SSH target (per-lease key, `known_hosts`, control socket)
//! and its Linux telemetry, sampled over the lease's SSH master (spec §4.9).

use std::path::PathBuf;
use std::sync::Arc;

use crabbox_providers::LeaseRecord;
use crabbox_remote::ssh::{HostKeyPolicy, SshTarget};

use super::context::expand_home;
use crate::paths;

/// The SSH target for a lease.
pub fn ssh_target(lease: &LeaseRecord) -> SshTarget {
    let key_dir = paths::lease_key_dir(&lease.lease_id);
    let known_hosts = key_dir.join("known_hosts");
    let key = match &lease.ssh_key {
        Some(key) => Some(PathBuf::from(expand_home(key))),
        None => Some(key_dir.join("id_ed25519")),
    };
    SshTarget {
        user: lease.ssh_user.clone(),
        host: lease.ssh_host.clone(),
        port: lease.ssh_port,
        fallback_ports: lease.ssh_fallback_ports.clone(),
        key,
        known_hosts,
        host_keys: HostKeyPolicy::AcceptNew,
        control_dir: Some(paths::control_dir()),
        proxy: lease.ssh_proxy.clone(),
    }
}

/// Pins the host key a provider or coordinator vouches for in the lease's `known_hosts`.
pub fn pin_host_key(record: &LeaseRecord) -> std::io::Result<()> {
    let Some(host_key) = &record.ssh_host_key else {
        return Ok(());
    };
    let key_dir = paths::lease_key_dir(&record.lease_id);
    std::fs::create_dir_all(&key_dir)?;
    let line = format!("[{}]:{} {host_key}\n", record.ssh_host, record.ssh_port);
    std::fs::write(key_dir.join("known_hosts"), line)
}

/// Linux telemetry from the runner, one command over the lease's SSH master (spec §4.9).
pub const TELEMETRY_SCRIPT: &str = r#"set +e
echo cpuCount=$(getconf _NPROCESSORS_ONLN 2>/dev/null)
read l1 l5 l15 _ < /proc/loadavg 2>/dev/null && echo load1=$l1 && echo load5=$l5 && echo load15=$l15
awk '/^MemTotal:/{t=$2*1024} /^MemAvailable:/{a=$2*1024} END{if(t>0){printf "memoryTotalBytes=%d\nmemoryUsedBytes=%d\nmemoryPercent=%.1f\n",t,t-a,(t-a)*100/t}}' /proc/meminfo 2>/dev/null
df -PB1 / 2>/dev/null | awk 'NR==2{printf "diskTotalBytes=%d\ndiskUsedBytes=%d\ndiskPercent=%.1f\n",$2,$3,($2>0?$3*100/$2:0)}'
awk '{printf "uptimeSeconds=%d\n",$1}' /proc/uptime 2>/dev/null
"#;

/// Parses `key=value` telemetry lines; `None` when no metric parsed.
pub fn parse_telemetry(text: &str) -> Option<serde_json::Value> {
    let mut map = serde_json::Map::new();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let Ok(n) = v.trim().parse::<f64>() else {
            continue;
        };
        if n.is_finite() && n >= 0.0 {
            map.insert(k.to_owned(), serde_json::json!(n));
        }
    }
    if map.is_empty() {
        return None;
    }
    map.insert(
        "capturedAt".into(),
        serde_json::json!(crabbox_api::coord::Timestamp::now().to_string()),
    );
    map.insert("source".into(), serde_json::json!("ssh-linux"));
    Some(serde_json::Value::Object(map))
}

/// Samples the runner's telemetry (for heartbeats and the run record).
pub type Sampler = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Option<serde_json::Value>> + Send + Sync,
>;

/// Samples the runner's telemetry over its SSH master.
pub fn sampler(target: SshTarget) -> Sampler {
    Arc::new(move || {
        let target = target.clone();
        Box::pin(async move {
            let out = target.capture(TELEMETRY_SCRIPT).await.ok()?;
            parse_telemetry(&String::from_utf8_lossy(&out.stdout))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_lines_parse_and_garbage_is_dropped() {
        let v =
            parse_telemetry("cpuCount=2\nload1=0.50\nmemoryPercent=-3\nnoise\nuptimeSeconds=12\n")
                .unwrap();
        assert_eq!(v["cpuCount"], 2.0);
        assert_eq!(v["load1"], 0.5);
        assert!(v.get("memoryPercent").is_none());
        assert_eq!(v["source"], "ssh-linux");
        assert!(parse_telemetry("nothing here").is_none());
    }
}

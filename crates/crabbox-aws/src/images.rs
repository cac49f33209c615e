//! Runner images of `crabbox image create|promote|fsr-status|delete` on EC2 (spec/providers.md
//! §4): AMIs made from a lease's instance, the wait until one is available, their deletion with
//! their EBS snapshots ([`delete`]), and fast snapshot restore of those snapshots
//! ([`enable_fsr`], [`fsr_status`]).
//!
//! An image is Crabbox's when its tags say so (`crabbox=true` and `created_by=crabbox`, both put
//! on at creation together with `Name` and `lease`); only such images and snapshots are deleted.
//! The operations also take a snapshot id (`snap-…`) wherever they take an image id: such a
//! snapshot is described as an [`ImageInfo`] of its own (see [`ImageInfo::of_snapshot`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::primitives::DateTimeFormat;
use aws_sdk_ec2::types::{Image, ResourceType, Snapshot, SnapshotState, Tag, TagSpecification};
use crabbox_providers::ProviderError;

use crate::client::call;
use crate::network::filter;
use crate::policy::Action;

mod delete;
mod fsr;

pub use delete::{DeleteReport, delete};
pub use fsr::{FsrState, enable_fsr, fsr_status};

/// An AMI, or an EBS snapshot, as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `ami-…` or `snap-…`.
    pub id: String,
    /// The AMI's name; a snapshot's `Name` tag.
    pub name: String,
    /// `pending`, `available`, `failed`, `invalid`, `deregistered`, `disabled`… for AMIs; a
    /// snapshot's states read `pending`, `available` (EC2: `completed`), `failed` (`error`).
    pub state: String,
    /// Why the image is in its state, when EC2 says (a failed image's cause).
    pub state_reason: Option<String>,
    /// `x86_64`, `arm64`, `x86_64_mac`, `arm64_mac`; for a snapshot its
    /// `crabbox_architecture` tag, or empty.
    pub architecture: String,
    pub region: String,
    /// RFC 3339, as EC2 reports it (a snapshot's start time).
    pub created_at: String,
    /// The EBS snapshots of its block-device mappings (a snapshot: itself).
    pub snapshot_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// Tagged `crabbox=true` and `created_by=crabbox`: only such images are deleted.
    pub owned_by_crabbox: bool,
    /// `/dev/sda1`…; for a snapshot its `crabbox_root_device_name` tag, or empty.
    pub root_device_name: String,
}

impl ImageInfo {
    fn of_image(image: &Image, region: &str) -> Self {
        let tags = tag_map(image.tags());
        Self {
            id: image.image_id().unwrap_or_default().to_owned(),
            name: image.name().unwrap_or_default().to_owned(),
            state: image
                .state()
                .map_or_else(String::new, |s| s.as_str().to_owned()),
            state_reason: image
                .state_reason()
                .and_then(|r| r.message().or(r.code()))
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            architecture: image
                .architecture()
                .map_or_else(String::new, |a| a.as_str().to_owned()),
            region: region.to_owned(),
            created_at: image.creation_date().unwrap_or_default().to_owned(),
            snapshot_ids: image
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs()?.snapshot_id())
                .map(str::to_owned)
                .collect(),
            owned_by_crabbox: is_crabboxs(&tags),
            root_device_name: image.root_device_name().unwrap_or_default().to_owned(),
            tags,
        }
    }

    /// A snapshot as an image: the one a brokered lease may boot by registering it, named,
    /// and described by its tags (`Name`, `crabbox_architecture`, `crabbox_root_device_name`),
    /// with its states read the way images' are (`completed` is `available`).
    pub fn of_snapshot(snapshot: &Snapshot, region: &str) -> Self {
        let tags = tag_map(snapshot.tags());
        let tag = |key: &str| tags.get(key).cloned().unwrap_or_default();
        let id = snapshot.snapshot_id().unwrap_or_default().to_owned();
        Self {
            name: tag("Name"),
            state: match snapshot.state() {
                Some(SnapshotState::Completed) => "available".to_owned(),
                Some(SnapshotState::Error) => "failed".to_owned(),
                Some(other) => other.as_str().to_owned(),
                None => String::new(),
            },
            state_reason: snapshot
                .state_message()
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
            architecture: tag("crabbox_architecture"),
            region: region.to_owned(),
            created_at: snapshot
                .start_time()
                .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
                .unwrap_or_default(),
            snapshot_ids: vec![id.clone()],
            owned_by_crabbox: is_crabboxs(&tags),
            root_device_name: tag("crabbox_root_device_name"),
            id,
            tags,
        }
    }

    /// The lease the image was made from, when Crabbox made it.
    pub fn lease(&self) -> Option<&str> {
        self.tags.get("lease").map(String::as_str)
    }
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect()
}

/// Whether the tags mark a resource Crabbox made.
fn is_crabboxs(tags: &BTreeMap<String, String>) -> bool {
    tags.get("crabbox").map(String::as_str) == Some("true")
        && tags.get("created_by").map(String::as_str) == Some("crabbox")
}

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Snapshot,
}

/// `ami-` or `snap-` and 8 to 17 lowercase hex digits, or a clear error.
fn kind_of(id: &str) -> Result<Kind, ProviderError> {
    let hex = |rest: &str| {
        (8..=17).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if id.strip_prefix("ami-").is_some_and(hex) {
        Ok(Kind::Image)
    } else if id.strip_prefix("snap-").is_some_and(hex) {
        Ok(Kind::Snapshot)
    } else {
        Err(ProviderError::InvalidSpec(format!(
            "{id:?} is not an AWS image id (ami-…) or EBS snapshot id (snap-…)"
        )))
    }
}

/// Checks an image name the way EC2 does (3 to 128 letters, digits, spaces and `( ) [ ] . / -
/// ' @ _`), so a bad one is refused before anything is asked of AWS.
pub fn check_name(name: &str) -> Result<(), ProviderError> {
    const ALLOWED: &str = "letters, digits, spaces and ( ) [ ] . / - ' @ _";
    let length = name.chars().count();
    if !(3..=128).contains(&length) {
        return Err(ProviderError::InvalidSpec(format!(
            "invalid AWS image name {name:?}: it has {length} characters, AWS takes 3 to 128 \
             {ALLOWED} (e.g. crabbox-linux-devtools-20260101-1200)"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || " ()[]./-'@_".contains(*c)))
    {
        return Err(ProviderError::InvalidSpec(format!(
            "invalid AWS image name {name:?}: {bad:?} is not allowed; AWS takes {ALLOWED}"
        )));
    }
    Ok(())
}

/// Starts an AMI of `instance_id` named `name` (`no_reboot`: without stopping the instance
/// first, so the copy is crash-consistent); returns its id. The image and its snapshots are
/// tagged `crabbox=true`, `created_by=crabbox`, `Name=<name>` and `lease=<lease_id>`.
///
/// A name EC2 would refuse is refused before any call, and a name in use by one of the
/// account's images is an error naming that image. A call whose answer is lost (or that fails
/// on EC2's side) is not simply repeated: an image of this name and lease that exists by then is
/// the one it made.
pub async fn create_image(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    name: &str,
    no_reboot: bool,
    lease_id: &str,
) -> Result<String, ProviderError> {
    check_name(name)?;
    if let Some(existing) = find_by_name(ec2, name).await? {
        return Err(name_in_use(name, &existing));
    }
    let tags = [
        ("crabbox", "true"),
        ("created_by", "crabbox"),
        ("Name", name),
        ("lease", lease_id),
    ];
    let tagged = |kind: ResourceType| {
        let spec = TagSpecification::builder().resource_type(kind);
        tags.iter()
            .fold(spec, |spec, (k, v)| {
                spec.tags(Tag::builder().key(*k).value(*v).build())
            })
            .build()
    };
    // The SDK would repeat a call whose answer was lost; EC2 would then refuse the repeat
    // (the name is taken by the first), so repeats are made here, after a look for the image.
    let once = aws_sdk_ec2::config::Builder::default()
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled());
    let mut pauses = [Duration::from_secs(1), Duration::from_secs(2)].into_iter();
    loop {
        let request = ec2
            .create_image()
            .instance_id(instance_id)
            .name(name)
            .description(format!("Crabbox image of lease {lease_id}"))
            .no_reboot(no_reboot)
            .tag_specifications(tagged(ResourceType::Image))
            .tag_specifications(tagged(ResourceType::Snapshot))
            .customize()
            .config_override(once.clone());
        let e = match call(Action::CreateImage, request.send()).await {
            Ok(out) => {
                return out.image_id().map(str::to_owned).ok_or_else(|| {
                    ProviderError::Transient("AWS CreateImage answered without an image id".into())
                });
            }
            Err(e) => e,
        };
        let unsure = e.code.is_empty()
            || matches!(
                e.error,
                ProviderError::Transient(_) | ProviderError::RateLimited(_)
            );
        if !unsure && e.code != "InvalidAMIName.Duplicate" {
            return Err(e.error);
        }
        if let Some(existing) = find_by_name(ec2, name).await? {
            return if existing.owned_by_crabbox && existing.lease() == Some(lease_id) {
                Ok(existing.id)
            } else {
                Err(name_in_use(name, &existing))
            };
        }
        match pauses.next() {
            Some(pause) if unsure => tokio::time::sleep(pause).await,
            _ => return Err(e.error),
        }
    }
}

fn name_in_use(name: &str, existing: &ImageInfo) -> ProviderError {
    ProviderError::InvalidSpec(format!(
        "an AWS image named {name:?} exists already: {} ({}, made {}); choose another name",
        existing.id, existing.state, existing.created_at
    ))
}

/// The account's own image named `name`, if there is one.
async fn find_by_name(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
) -> Result<Option<ImageInfo>, ProviderError> {
    let found = call(
        Action::DescribeImages,
        ec2.describe_images()
            .owners("self")
            .filters(filter("name", name))
            .send(),
    )
    .await?;
    let region = region(ec2);
    Ok(found
        .images()
        .iter()
        .find(|i| i.name() == Some(name))
        .map(|i| ImageInfo::of_image(i, &region)))
}

/// The images Crabbox made in the client's region, newest first.
pub async fn list(ec2: &aws_sdk_ec2::Client) -> Result<Vec<ImageInfo>, ProviderError> {
    let found = call(
        Action::DescribeImages,
        ec2.describe_images()
            .owners("self")
            .filters(filter("tag:crabbox", "true"))
            .filters(filter("tag:created_by", "crabbox"))
            .send(),
    )
    .await?;
    let region = region(ec2);
    let mut images: Vec<ImageInfo> = found
        .images()
        .iter()
        .map(|i| ImageInfo::of_image(i, &region))
        .collect();
    images.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    Ok(images)
}

/// The image (`ami-…`) or snapshot (`snap-…`); `None` when EC2 has no such thing (any more).
pub async fn describe(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<ImageInfo>, ProviderError> {
    let region = region(ec2);
    match kind_of(id)? {
        Kind::Image => {
            let found = call(
                Action::DescribeImages,
                ec2.describe_images().image_ids(id).send(),
            )
            .await;
            match found {
                Ok(out) => Ok(out
                    .images()
                    .iter()
                    .find(|i| i.image_id() == Some(id))
                    .map(|i| ImageInfo::of_image(i, &region))),
                // `Unavailable`: deregistered a moment ago.
                Err(e) if e.is_not_found() || e.code == "InvalidAMIID.Unavailable" => Ok(None),
                Err(e) => Err(e.error),
            }
        }
        Kind::Snapshot => {
            let found = call(
                Action::DescribeSnapshots,
                ec2.describe_snapshots().snapshot_ids(id).send(),
            )
            .await;
            match found {
                Ok(out) => Ok(out
                    .snapshots()
                    .iter()
                    .find(|s| s.snapshot_id() == Some(id))
                    .map(|s| ImageInfo::of_snapshot(s, &region))),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.error),
            }
        }
    }
}

/// Where an image's state leaves a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Available,
    /// It will never be available: failed, invalid, deregistered, disabled.
    Never,
    Pending,
}

fn settled(state: &str) -> Settled {
    match state {
        "available" => Settled::Available,
        "failed" | "invalid" | "deregistered" | "disabled" | "error" => Settled::Never,
        _ => Settled::Pending,
    }
}

/// Polls the image every `poll` until it is available and returns it; `on_progress` sees every
/// description read. An image that fails (or is deregistered, or disappears) is an error with
/// EC2's reason; one still not available after `timeout` is a transient error saying how long
/// it was waited for. A just-made image EC2 does not show yet is waited for, as are EC2's
/// throttling and transient failures.
pub async fn wait_available(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
    timeout: Duration,
    poll: Duration,
    mut on_progress: impl FnMut(&ImageInfo),
) -> Result<ImageInfo, ProviderError> {
    let start = Instant::now();
    let mut last: Option<ImageInfo> = None;
    loop {
        match describe(ec2, image_id).await {
            Ok(Some(info)) => {
                on_progress(&info);
                match settled(&info.state) {
                    Settled::Available => return Ok(info),
                    Settled::Never => return Err(never_available(&info)),
                    Settled::Pending => last = Some(info),
                }
            }
            Ok(None) if last.is_some() => {
                return Err(ProviderError::InvalidSpec(format!(
                    "AWS image {image_id} disappeared while it was waited for (deregistered \
                     meanwhile?)"
                )));
            }
            // Just made, EC2's reads may not show it yet; or EC2 is busy: ask again.
            Ok(None) | Err(ProviderError::RateLimited(_) | ProviderError::Transient(_)) => {}
            Err(e) => return Err(e),
        }
        let Some(left) = timeout
            .checked_sub(start.elapsed())
            .filter(|l| !l.is_zero())
        else {
            let what = last.map_or_else(
                || "was not visible".to_owned(),
                |info| format!("was still {}", info.state),
            );
            return Err(ProviderError::Transient(format!(
                "AWS image {image_id} {what} after waiting {} for it to become available",
                human(timeout)
            )));
        };
        tokio::time::sleep(poll.min(left)).await;
    }
}

fn never_available(info: &ImageInfo) -> ProviderError {
    let reason = info
        .state_reason
        .as_deref()
        .unwrap_or("AWS gives no reason");
    ProviderError::InvalidSpec(format!(
        "AWS image {} ({}) is {} and will not become available: {reason}",
        info.id, info.name, info.state
    ))
}

/// `45m`, `90s`, `250ms`: a wait's length for a message.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) && d.subsec_nanos() == 0 {
        format!("{}m", secs / 60)
    } else if secs >= 1 && d.subsec_nanos() == 0 {
        format!("{secs}s")
    } else if secs >= 1 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `e`'s kind with `text` for its message.
fn reworded(e: ProviderError, text: String) -> ProviderError {
    match e {
        ProviderError::NotFound(_) => ProviderError::NotFound(text),
        ProviderError::InvalidSpec(_) => ProviderError::InvalidSpec(text),
        ProviderError::Capacity(_) => ProviderError::Capacity(text),
        ProviderError::Quota(_) => ProviderError::Quota(text),
        ProviderError::RateLimited(_) => ProviderError::RateLimited(text),
        ProviderError::Auth(_) => ProviderError::Auth(text),
        ProviderError::Transient(_) => ProviderError::Transient(text),
        ProviderError::Io { source, .. } => ProviderError::Io {
            context: text,
            source,
        },
    }
}

/// The client's region.
fn region(ec2: &aws_sdk_ec2::Client) -> String {
    ec2.config()
        .region()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_the_way_ec2_checks_them() {
        for good in [
            "crabbox-linux-desktop-browser-20260101-1200",
            "abc",
            "with space (1) [x] a/b.c d'e f@g h_i",
            &"x".repeat(128),
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let refusal = |name: &str| check_name(name).unwrap_err().to_string();
        assert!(refusal("ab").contains("it has 2 characters, AWS takes 3 to 128"));
        assert!(refusal(&"x".repeat(129)).contains("129 characters"));
        assert!(refusal("").contains("0 characters"));
        assert!(refusal("crabbox:linux").contains("':' is not allowed"));
        assert!(refusal("crabbox*").contains("'*' is not allowed"));
        assert!(refusal("crabbøx").contains("'ø' is not allowed"));
    }

    #[test]
    fn ids_name_an_image_or_a_snapshot() {
        assert_eq!(kind_of("ami-0123456789abcdef0").unwrap(), Kind::Image);
        assert_eq!(kind_of("ami-12345678").unwrap(), Kind::Image);
        assert_eq!(kind_of("snap-0123456789abcdef0").unwrap(), Kind::Snapshot);
        for bad in [
            "",
            "ami-",
            "ami-123",
            "ami-0123456789ABCDEF0",
            "vol-12345678",
            "i-0a",
        ] {
            let e = kind_of(bad).unwrap_err().to_string();
            assert!(e.contains("is not an AWS image id"), "{bad}: {e}");
        }
    }

    #[test]
    fn only_both_tags_make_an_image_crabboxs() {
        let tags = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(is_crabboxs(&tags(&[
            ("crabbox", "true"),
            ("created_by", "crabbox")
        ])));
        assert!(!is_crabboxs(&tags(&[("crabbox", "true")])));
        assert!(!is_crabboxs(&tags(&[("created_by", "crabbox")])));
        assert!(!is_crabboxs(&tags(&[
            ("crabbox", "false"),
            ("created_by", "crabbox")
        ])));
    }

    #[test]
    fn states_that_end_a_wait() {
        assert_eq!(settled("available"), Settled::Available);
        for never in ["failed", "invalid", "deregistered", "disabled", "error"] {
            assert_eq!(settled(never), Settled::Never, "{never}");
        }
        for pending in ["pending", "transient", ""] {
            assert_eq!(settled(pending), Settled::Pending, "{pending}");
        }
    }

    #[test]
    fn a_failed_image_says_why() {
        let image = Image::builder()
            .image_id("ami-0123456789abcdef0")
            .name("crabbox-linux-devtools-20260101-1200")
            .state(aws_sdk_ec2::types::ImageState::Failed)
            .state_reason(
                aws_sdk_ec2::types::StateReason::builder()
                    .code("Server.InternalError")
                    .message("Server.InternalError: Internal error on launch")
                    .build(),
            )
            .build();
        let info = ImageInfo::of_image(&image, "eu-west-1");
        assert_eq!(
            never_available(&info).to_string(),
            "invalid lease request: AWS image ami-0123456789abcdef0 \
             (crabbox-linux-devtools-20260101-1200) is failed and will not become available: \
             Server.InternalError: Internal error on launch"
        );
    }

    #[test]
    fn waits_read_as_people_write_them() {
        assert_eq!(human(Duration::from_mins(45)), "45m");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }
}

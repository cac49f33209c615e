//! Runner images (`crabbox image create|fsr-status|delete`) against moto behind the fault
//! proxy, which supplies what moto lacks here: snapshot tags in `CreateImage` and fast
//! snapshot restore. Scenes are set and checked in moto directly, past the proxy, so the
//! proxy's calls are exactly the product's, and each of them must be in the IAM policy.

use std::collections::BTreeMap;
use std::time::Duration;

use crabbox_aws::images::{self, FsrState};
use crabbox_providers::ProviderError;
use crabbox_test_support::fault_proxy::{Ec2Error, Fault};

use crate::cloud::Cloud;
use crabbox_test_support::loopback_only;
use crabbox_test_support::moto::newest_ubuntu_image;

const NAME: &str = "crabbox-linux-devtools-20260101-1200";
const LEASE: &str = "cbx_00000000b001";

impl Cloud {
    /// An instance of the seeded Ubuntu image, launched in moto directly.
    async fn instance(&self) -> String {
        let image = newest_ubuntu_image("24.04", "x86_64").id;
        self.moto
            .ok(
                "RunInstances",
                &[("ImageId", image), ("MinCount", "1"), ("MaxCount", "1")],
            )
            .await
            .first("instanceId")
            .expect("an instance id")
    }

    /// An image Crabbox made of a new instance, and its one snapshot.
    async fn crabbox_image(&self, name: &str) -> (String, String) {
        let instance = self.instance().await;
        let id = images::create_image(&self.ec2, &instance, name, true, LEASE)
            .await
            .unwrap();
        let snapshot = self.snapshots_of(&id).await;
        assert_eq!(snapshot.len(), 1, "moto gives every image one snapshot");
        (id, snapshot[0].clone())
    }

    /// An image made in moto directly, with `tags` (`key=value`) on the image only.
    async fn foreign_image(&self, name: &str, tags: &[(&str, &str)]) -> String {
        let instance = self.instance().await;
        let mut params = vec![("InstanceId", instance.as_str()), ("Name", name)];
        let keys: Vec<(String, String)> = (1..=tags.len())
            .map(|i| {
                (
                    format!("TagSpecification.1.Tag.{i}.Key"),
                    format!("TagSpecification.1.Tag.{i}.Value"),
                )
            })
            .collect();
        if !tags.is_empty() {
            params.push(("TagSpecification.1.ResourceType", "image"));
        }
        for ((key, value), (k, v)) in keys.iter().zip(tags) {
            params.push((key, k));
            params.push((value, v));
        }
        self.moto
            .ok("CreateImage", &params)
            .await
            .first("imageId")
            .expect("an image id")
    }

    /// A snapshot of a new volume, made in moto directly, with `tags` on it.
    async fn snapshot(&self, tags: &[(&str, &str)]) -> String {
        let volume = self
            .moto
            .ok(
                "CreateVolume",
                &[("AvailabilityZone", "eu-west-1a"), ("Size", "8")],
            )
            .await
            .first("volumeId")
            .expect("a volume id");
        let mut params: Vec<(String, String)> = vec![("VolumeId".into(), volume)];
        if !tags.is_empty() {
            params.push(("TagSpecification.1.ResourceType".into(), "snapshot".into()));
        }
        for (i, (k, v)) in tags.iter().enumerate() {
            params.push((format!("TagSpecification.1.Tag.{}.Key", i + 1), (*k).into()));
            params.push((
                format!("TagSpecification.1.Tag.{}.Value", i + 1),
                (*v).into(),
            ));
        }
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (&**k, &**v)).collect();
        self.moto
            .ok("CreateSnapshot", &params)
            .await
            .first("snapshotId")
            .expect("a snapshot id")
    }

    async fn image_exists(&self, id: &str) -> bool {
        let answer = self.moto.ok("DescribeImages", &[("ImageId.1", id)]).await;
        answer.all("imageId").iter().any(|i| i == id)
    }

    /// The snapshots of the image's block-device mappings, as moto has them.
    async fn snapshots_of(&self, id: &str) -> Vec<String> {
        let answer = self.moto.ok("DescribeImages", &[("ImageId.1", id)]).await;
        answer.all("snapshotId")
    }

    async fn snapshot_exists(&self, id: &str) -> bool {
        let answer = self
            .moto
            .call("DescribeSnapshots", &[("SnapshotId.1", id)])
            .await
            .unwrap();
        answer.status == 200 && answer.all("snapshotId").iter().any(|s| s == id)
    }

    async fn snapshot_tags(&self, id: &str) -> BTreeMap<String, String> {
        let answer = self
            .moto
            .ok("DescribeSnapshots", &[("SnapshotId.1", id)])
            .await;
        answer
            .all("key")
            .into_iter()
            .zip(answer.all("value"))
            .collect()
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn fsr(snapshot: &str, zone: &str, state: &str) -> FsrState {
    FsrState {
        snapshot_id: snapshot.to_owned(),
        zone: zone.to_owned(),
        state: state.to_owned(),
    }
}

fn crabbox_tags(name: &str) -> BTreeMap<String, String> {
    [
        ("Name", name),
        ("crabbox", "true"),
        ("created_by", "crabbox"),
        ("lease", LEASE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[tokio::test]
async fn an_image_is_made_waited_for_made_fast_and_deleted_with_its_snapshots() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let instance = cloud.instance().await;
    let id = images::create_image(&cloud.ec2, &instance, NAME, true, LEASE)
        .await
        .unwrap();
    let create = cloud
        .proxy
        .calls()
        .into_iter()
        .find(|c| c.action == "CreateImage")
        .unwrap();
    assert_eq!(create.param("InstanceId"), Some(instance.as_str()));
    assert_eq!(create.param("NoReboot"), Some("true"));
    let tagged: Vec<&str> = create
        .params
        .iter()
        .filter(|(k, _)| k.ends_with(".ResourceType"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(tagged, ["image", "snapshot"]);
    assert_eq!(
        cloud.take_calls(),
        ["DescribeImages", "CreateImage"],
        "a look for the name, then the create"
    );

    // moto makes images available at once.
    let mut seen = Vec::new();
    let info = images::wait_available(
        &cloud.ec2,
        &id,
        Duration::from_secs(10),
        Duration::from_millis(50),
        |i| seen.push(i.state.clone()),
    )
    .await
    .unwrap();
    assert_eq!(seen, ["available"]);
    assert_eq!(
        images::describe(&cloud.ec2, &id).await.unwrap().as_ref(),
        Some(&info)
    );
    assert_eq!(
        (
            info.id.as_str(),
            info.name.as_str(),
            info.state.as_str(),
            info.architecture.as_str(),
            info.region.as_str(),
            info.root_device_name.as_str(),
        ),
        (
            id.as_str(),
            NAME,
            "available",
            "x86_64",
            "eu-west-1",
            "/dev/sda1"
        )
    );
    assert!(info.owned_by_crabbox);
    assert_eq!(info.tags, crabbox_tags(NAME));
    assert_eq!(info.lease(), Some(LEASE));
    assert!(!info.created_at.is_empty());
    assert_eq!(info.snapshot_ids, cloud.snapshots_of(&id).await);
    let [snapshot] = info.snapshot_ids.as_slice() else {
        panic!("one snapshot: {:?}", info.snapshot_ids);
    };
    assert_eq!(cloud.snapshot_tags(snapshot).await, crabbox_tags(NAME));
    let as_image = images::describe(&cloud.ec2, snapshot)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (as_image.state.as_str(), as_image.name.as_str()),
        ("available", NAME)
    );
    assert!(as_image.owned_by_crabbox);
    assert_eq!(as_image.snapshot_ids, std::slice::from_ref(snapshot));

    let zones = strings(&["eu-west-1a", "eu-west-1b"]);
    let enabled = images::enable_fsr(&cloud.ec2, &id, &zones).await.unwrap();
    assert_eq!(
        enabled,
        [
            fsr(snapshot, "eu-west-1a", "enabling"),
            fsr(snapshot, "eu-west-1b", "enabling")
        ]
    );
    assert_eq!(
        images::fsr_status(&cloud.ec2, &id, &[]).await.unwrap(),
        [
            fsr(snapshot, "eu-west-1a", "enabled"),
            fsr(snapshot, "eu-west-1b", "enabled")
        ]
    );
    assert_eq!(
        images::fsr_status(&cloud.ec2, &id, &strings(&["eu-west-1c", "eu-west-1a"]))
            .await
            .unwrap(),
        [
            fsr(snapshot, "eu-west-1a", "enabled"),
            fsr(snapshot, "eu-west-1c", "disabled")
        ],
        "every zone asked about, in order"
    );
    cloud.take_calls();

    let report = images::delete(&cloud.ec2, &id).await.unwrap();
    assert!(report.deregistered && !report.already_gone);
    assert_eq!(report.removed(), [id.clone(), snapshot.clone()]);
    assert_eq!(
        report.disabled_fsr,
        [
            fsr(snapshot, "eu-west-1a", "disabling"),
            fsr(snapshot, "eu-west-1b", "disabling")
        ],
        "EC2 deletes no snapshot that has fast restores"
    );
    assert_eq!(
        cloud.take_calls(),
        [
            "DescribeImages",
            "DescribeFastSnapshotRestores",
            "DisableFastSnapshotRestores",
            "DeregisterImage",
            "DeleteSnapshot"
        ]
    );
    assert!(!cloud.image_exists(&id).await);
    assert!(!cloud.snapshot_exists(snapshot).await);

    // Again: nothing is left, and that is fine.
    let again = images::delete(&cloud.ec2, &id).await.unwrap();
    assert!(again.already_gone, "{again:?}");
    assert!(again.removed().is_empty());
    assert_eq!(images::describe(&cloud.ec2, &id).await.unwrap(), None);
    let again = images::delete(&cloud.ec2, snapshot).await.unwrap();
    assert!(again.already_gone, "{again:?}");
    cloud.take_calls();
}

#[tokio::test]
async fn images_and_snapshots_crabbox_did_not_make_are_refused_and_left_alone() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let foreign = cloud.foreign_image("someone-elses-image", &[]).await;
    // Both tags are needed: `crabbox=true` alone is not Crabbox's mark.
    let half = cloud
        .foreign_image("half-tagged", &[("crabbox", "true")])
        .await;
    let foreign_snapshot = cloud.snapshot(&[]).await;
    for id in [&foreign, &half, &foreign_snapshot] {
        let e = images::delete(&cloud.ec2, id).await.unwrap_err();
        assert!(matches!(e, ProviderError::InvalidSpec(_)), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("refusing to delete AWS") && text.contains(id.as_str()),
            "{text}"
        );
        assert!(text.contains("not made by Crabbox"), "{text}");
    }
    for image in [&foreign, &half] {
        assert!(cloud.image_exists(image).await);
        for snapshot in cloud.snapshots_of(image).await {
            assert!(cloud.snapshot_exists(&snapshot).await);
        }
    }
    assert!(cloud.snapshot_exists(&foreign_snapshot).await);
    let calls = cloud.take_calls();
    assert!(
        calls.iter().all(|c| c.starts_with("Describe")),
        "nothing but looks: {calls:?}"
    );

    // A snapshot with Crabbox's tags goes, alone.
    let own = cloud
        .snapshot(&[("crabbox", "true"), ("created_by", "crabbox")])
        .await;
    let report = images::delete(&cloud.ec2, &own).await.unwrap();
    assert!(!report.deregistered);
    assert_eq!(report.removed(), std::slice::from_ref(&own));
    assert!(!cloud.snapshot_exists(&own).await);
    assert!(cloud.snapshot_exists(&foreign_snapshot).await);

    // The snapshot of a Crabbox image that is still registered is the image's to delete.
    let (image, snapshot) = cloud.crabbox_image(NAME).await;
    let e = images::delete(&cloud.ec2, &snapshot).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("delete the image that uses it instead"),
        "{e}"
    );
    assert!(cloud.image_exists(&image).await && cloud.snapshot_exists(&snapshot).await);

    // Crabbox's images are the ones with both tags.
    let listed: Vec<String> = images::list(&cloud.ec2)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, [image]);
    cloud.take_calls();
}

#[tokio::test]
async fn a_bad_name_is_refused_before_any_call_and_a_taken_one_names_its_image() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let instance = cloud.instance().await;
    let long = "x".repeat(129);
    for bad in ["ab", long.as_str(), "crabbox:linux", "crabbox*", ""] {
        let e = images::create_image(&cloud.ec2, &instance, bad, true, LEASE)
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::InvalidSpec(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains(&format!("invalid AWS image name {bad:?}")),
            "{e}"
        );
    }
    assert!(cloud.take_calls().is_empty(), "refused before any call");

    let (first, _) = cloud.crabbox_image(NAME).await;
    cloud.take_calls();
    let e = images::create_image(&cloud.ec2, &instance, NAME, true, "cbx_00000000b002")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "an AWS image named {NAME:?} exists already: {first}"
        )),
        "{text}"
    );
    assert_eq!(cloud.take_calls(), ["DescribeImages"], "no create");
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_returns_the_image_it_made() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let instance = cloud.instance().await;
    cloud.proxy.inject(Fault::drop_reply("CreateImage"));
    let id = images::create_image(&cloud.ec2, &instance, NAME, true, LEASE)
        .await
        .unwrap();
    assert_eq!(
        cloud.take_calls(),
        ["DescribeImages", "CreateImage", "DescribeImages"],
        "the lost answer is looked for, not made again"
    );
    let mine = cloud
        .moto
        .ok(
            "DescribeImages",
            &[
                ("Owner.1", "self"),
                ("Filter.1.Name", "name"),
                ("Filter.1.Value.1", NAME),
            ],
        )
        .await;
    assert_eq!(mine.all("imageId"), [id]);
}

#[tokio::test]
async fn snapshots_are_deleted_once_aws_lets_go_of_them() {
    loopback_only!();
    let cloud = Cloud::start().await;
    // AWS frees a deregistered image's snapshot a moment later.
    let (id, snapshot) = cloud.crabbox_image(NAME).await;
    cloud.proxy.inject(Fault::refuse(
        "DeleteSnapshot",
        Ec2Error::InvalidSnapshotInUse,
    ));
    let report = images::delete(&cloud.ec2, &id).await.unwrap();
    assert_eq!(report.removed(), [id.clone(), snapshot.clone()]);
    assert_eq!(
        cloud.proxy.count("DeleteSnapshot"),
        2,
        "refused, then deleted"
    );
    assert!(!cloud.snapshot_exists(&snapshot).await);

    // A delete that stopped after the deregister is finished by the next one.
    let (id, snapshot) = cloud
        .crabbox_image("crabbox-linux-devtools-20260101-1300")
        .await;
    cloud
        .moto
        .ok("DeregisterImage", &[("ImageId", id.as_str())])
        .await;
    let report = images::delete(&cloud.ec2, &id).await.unwrap();
    assert!(!report.deregistered && !report.already_gone, "{report:?}");
    assert_eq!(report.removed(), std::slice::from_ref(&snapshot));
    assert!(!cloud.snapshot_exists(&snapshot).await);
    cloud.take_calls();
}

#[tokio::test]
async fn fast_snapshot_restore_needs_zones_of_the_region_and_reports_each_refusal() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let (id, snapshot) = cloud.crabbox_image(NAME).await;
    cloud.take_calls();

    let e = images::enable_fsr(&cloud.ec2, &id, &[]).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("needs at least one availability zone (e.g. eu-west-1a)"),
        "{e}"
    );
    let e = images::enable_fsr(&cloud.ec2, &id, &strings(&["us-east-1a"]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("availability zone \"us-east-1a\" is not in eu-west-1"),
        "{e}"
    );
    assert!(cloud.take_calls().is_empty(), "refused before any call");

    // EC2 turns on what it can and names what it cannot.
    let e = images::enable_fsr(&cloud.ec2, &id, &strings(&["eu-west-1a", "eu-west-1z"]))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        format!(
            "AWS EnableFastSnapshotRestores failed for {id}: {snapshot} in eu-west-1z \
             (InvalidParameterValue: Invalid availability zone: [eu-west-1z]) (went through \
             meanwhile: {snapshot} in eu-west-1a)"
        )
    );

    let e = images::enable_fsr(
        &cloud.ec2,
        "ami-0123456789abcdef0",
        &strings(&["eu-west-1a"]),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("AWS image ami-0123456789abcdef0 not found in eu-west-1"),
        "{e}"
    );
    cloud.take_calls();
}

#[tokio::test]
async fn a_wait_ends_when_its_time_is_up_and_says_how_long_it_waited() {
    loopback_only!();
    let cloud = Cloud::start().await;
    let e = images::wait_available(
        &cloud.ec2,
        "ami-0123456789abcdef0",
        Duration::from_millis(300),
        Duration::from_millis(50),
        |i| panic!("nothing to see: {i:?}"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ProviderError::Transient(_)), "{e:?}");
    assert_eq!(
        e.message(),
        "AWS image ami-0123456789abcdef0 was not visible after waiting 300ms for it to become \
         available"
    );
    assert!(cloud.take_calls().iter().all(|c| c == "DescribeImages"));
}

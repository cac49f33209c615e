use crabbox_test_support::ec2_query::Ec2Query;
use crabbox_test_support::loopback_only;
use crabbox_test_support::moto::{CANONICAL_OWNER, Moto, newest_ubuntu_image};

#[tokio::test]
async fn moto_serves_the_seeded_ubuntu_images() {
    loopback_only!();
    let moto = Moto::start();
    let ec2 = Ec2Query::new(&moto.url(), moto.region());
    let answer = ec2
        .ok(
            "DescribeImages",
            &[
                ("Owner.1", CANONICAL_OWNER),
                ("Filter.1.Name", "name"),
                (
                    "Filter.1.Value.1",
                    "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*",
                ),
                ("Filter.2.Name", "architecture"),
                ("Filter.2.Value.1", "arm64"),
            ],
        )
        .await;
    let mut ids = answer.all("imageId");
    ids.sort();
    assert_eq!(ids, ["ami-0a11000000000b401", "ami-0a11000000000b402"]);
    assert_eq!(
        newest_ubuntu_image("24.04", "arm64").id,
        "ami-0a11000000000b402"
    );
    assert_eq!(
        newest_ubuntu_image("26.04", "x86_64").id,
        "ami-0a11000000000a262"
    );
}

#[test]
fn the_child_environment_names_moto_and_nothing_of_the_machine() {
    loopback_only!();
    let moto = Moto::start();
    let mut cmd = std::process::Command::new("env");
    // The machine's own AWS settings, as a child would otherwise get them.
    cmd.env("AWS_PROFILE", "prod")
        .env("AWS_ENDPOINT_URL_EC2", "https://ec2.example")
        .env("AWS_SESSION_TOKEN", "real");
    moto.configure(&mut cmd, &moto.url());
    let out = cmd.output().unwrap();
    let env = String::from_utf8_lossy(&out.stdout);
    let aws: Vec<&str> = env.lines().filter(|l| l.starts_with("AWS_")).collect();
    let names: Vec<&str> = aws.iter().map(|l| l.split_once('=').unwrap().0).collect();
    assert_eq!(
        names.len(),
        7,
        "exactly the fixture's AWS variables: {aws:?}"
    );
    assert!(
        aws.contains(&format!("AWS_ENDPOINT_URL={}", moto.url()).as_str()),
        "{aws:?}"
    );
    assert!(aws.contains(&"AWS_EC2_METADATA_DISABLED=true"), "{aws:?}");
    assert!(aws.contains(&"AWS_REGION=eu-west-1"), "{aws:?}");
    for name in ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"] {
        let line = aws
            .iter()
            .find(|l| l.starts_with(&format!("{name}=")))
            .unwrap();
        let path = line.split_once('=').unwrap().1;
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            "",
            "{name} is an empty file"
        );
    }
}

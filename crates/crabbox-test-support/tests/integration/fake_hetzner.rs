//! The Hetzner fake over real HTTP, as a client sees it: Hetzner's error shapes and statuses,
//! SSH keys and their fingerprints, servers and their actions, label selectors and pages, the
//! rate limit, injected faults, the catalogue's prices, and a server booted by the boot
//! emulator.

use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use crabbox_remote::keys;
use crabbox_test_support::boot_emulator::BootEmulator;
use crabbox_test_support::fake_hetzner::{FakeHetzner, Fault};
use crabbox_test_support::loopback_only;
use reqwest::Method;
use serde_json::{Value, json};

/// A key whose fingerprint `ssh-keygen -E md5 -lf` prints as [`FINGERPRINT`].
const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP8DYtQervPzqasCQF7mpmb2N2dj9gMPWoay09pG0Gv2 test";
const FINGERPRINT: &str = "e5:a4:cc:ef:f9:a3:16:d9:4a:ac:f0:b5:5c:6f:65:41";

/// An answer: status, headers and JSON body (`null` when empty).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> u64 {
        self.headers[name].to_str().unwrap().parse().unwrap()
    }

    /// The error code of an error answer.
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A plain client of the fake's API.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(fake: &FakeHetzner) -> Self {
        Self {
            // Every endpoint here is on loopback: a machine's HTTP proxy must not be asked.
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: fake.url(),
            token: FakeHetzner::TOKEN.to_owned(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<Answer> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await.unwrap()
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await.unwrap()
    }

    /// Creates a server and returns the answer's body, asserting it was created.
    async fn create_server(&self, body: &Value) -> Value {
        let created = self.post("/servers", body).await;
        assert_eq!(created.status, 201, "{}", created.body);
        created.body
    }

    /// Polls an action until it is done, returning the number of reads it took.
    async fn wait(&self, action: &Value) -> u32 {
        for reads in 1..=20 {
            let read = self.get(&format!("/actions/{}", action["id"])).await;
            assert_eq!(read.status, 200, "{}", read.body);
            if read.body["action"]["status"] == "success" {
                assert_eq!(read.body["action"]["progress"], 100);
                assert!(read.body["action"]["finished"].is_string());
                return reads;
            }
            assert_eq!(read.body["action"]["status"], "running");
        }
        panic!("action {} never finished", action["id"]);
    }
}

fn cx23(name: &str, labels: &Value) -> Value {
    json!({"name": name, "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1",
           "labels": labels})
}

#[tokio::test]
async fn unknown_tokens_are_refused_in_hetzners_error_shape() {
    let fake = FakeHetzner::start();
    let mut api = Api::new(&fake);
    for token in ["", "not-the-token"] {
        token.clone_into(&mut api.token);
        let refused = api.get("/servers").await;
        assert_eq!(refused.status, 401);
        assert_eq!(
            refused.body,
            json!({"error": {"code": "unauthorized", "message": "unable to authenticate",
                             "details": {}}})
        );
        assert!(refused.headers.contains_key("ratelimit-remaining"));
    }
    FakeHetzner::TOKEN.clone_into(&mut api.token);
    assert_eq!(api.get("/servers").await.status, 200);
    assert_eq!(fake.count("GET /servers"), 3, "refused calls are counted");
    let unknown = api.get("/volumes").await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    assert_eq!(fake.calls().last().unwrap().route, "GET /volumes");
}

#[tokio::test]
async fn ssh_keys_are_unique_by_name_and_fingerprint_and_carry_hetzners_fingerprint() {
    let fake = FakeHetzner::start();
    let api = Api::new(&fake);
    let created = api
        .post(
            "/ssh_keys",
            &json!({"name": "crabbox-lease", "public_key": PUBLIC_KEY, "labels": {"crabbox": "1"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = &created.body["ssh_key"];
    assert_eq!(key["fingerprint"], FINGERPRINT);
    assert_eq!(key["public_key"], PUBLIC_KEY);
    assert_eq!(key["labels"], json!({"crabbox": "1"}));

    let dir = tempfile::tempdir().unwrap();
    let other = keys::ensure_ed25519(dir.path(), "other", "cbx-test").unwrap();
    let same_name = json!({"name": "crabbox-lease", "public_key": other.public_key().unwrap()});
    let same_key = json!({"name": "another-name", "public_key": PUBLIC_KEY});
    for body in [same_name, same_key] {
        let refused = api.post("/ssh_keys", &body).await;
        assert_eq!((refused.status, refused.code()), (409, "uniqueness_error"));
    }
    let garbage = api
        .post(
            "/ssh_keys",
            &json!({"name": "bad", "public_key": "ssh-ed25519 bm90IGEga2V5"}),
        )
        .await;
    assert_eq!((garbage.status, garbage.code()), (400, "invalid_input"));
    assert_eq!(
        garbage.body["error"]["details"]["fields"][0]["name"],
        "public_key"
    );

    let by_fingerprint = api
        .get(&format!("/ssh_keys?fingerprint={FINGERPRINT}"))
        .await;
    assert_eq!(by_fingerprint.body["ssh_keys"][0]["id"], key["id"]);
    let by_name = api.get("/ssh_keys?name=nobody").await;
    assert_eq!(by_name.body["ssh_keys"], json!([]));
    let path = format!("/ssh_keys/{}", key["id"]);
    assert_eq!(api.get(&path).await.body["ssh_key"], *key);
    let deleted = api.delete(&path).await;
    assert_eq!((deleted.status, &deleted.body), (204, &Value::Null));
    let again = api.delete(&path).await;
    assert_eq!((again.status, again.code()), (404, "not_found"));
    assert_eq!(fake.count("DELETE /ssh_keys/{id}"), 2);
    assert!(fake.ssh_keys().is_empty());
}

#[tokio::test]
async fn a_created_server_initializes_until_it_or_its_action_is_read_then_runs() {
    let fake = FakeHetzner::start();
    let api = Api::new(&fake);
    fake.set_action_polls(2);
    let key = api
        .post(
            "/ssh_keys",
            &json!({"name": "lease", "public_key": PUBLIC_KEY}),
        )
        .await;
    let created = api
        .create_server(&json!({
            "name": "cbx-1", "server_type": "ccx13", "image": "ubuntu-24.04", "location": "hel1",
            "ssh_keys": [key.body["ssh_key"]["id"]], "labels": {"crabbox": "lease-1"},
            "user_data": "#cloud-config\n", "start_after_create": true,
            "public_net": {"enable_ipv4": true, "enable_ipv6": false},
        }))
        .await;
    let server = &created["server"];
    assert_eq!(server["status"], "initializing");
    assert_eq!(server["server_type"]["name"], "ccx13");
    assert_eq!(server["server_type"]["cores"], 2);
    assert_eq!(server["image"]["name"], "ubuntu-24.04");
    assert_eq!(server["image"]["architecture"], "x86");
    assert_eq!(server["datacenter"]["location"]["name"], "hel1");
    assert_eq!(server["public_net"]["ipv6"], Value::Null);
    assert_eq!(server["private_net"], json!([]));
    assert_eq!(
        created["root_password"],
        Value::Null,
        "an SSH key was given"
    );
    assert_eq!(created["next_actions"][0]["command"], "start_server");
    let action = &created["action"];
    assert_eq!(
        (&action["command"], &action["status"], &action["progress"]),
        (&json!("create_server"), &json!("running"), &json!(0))
    );
    let ip: Ipv4Addr = server["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        !ip.is_loopback() && !ip.is_private() && !ip.is_unspecified(),
        "a public-looking address: {ip}"
    );
    assert_eq!(
        fake.user_data(server["id"].as_u64().unwrap()).as_deref(),
        Some("#cloud-config\n")
    );

    let path = format!("/servers/{}", server["id"]);
    assert_eq!(
        api.get(&path).await.body["server"]["status"],
        "initializing"
    );
    // The server's read counted as the action's first.
    assert_eq!(api.wait(action).await, 1, "done on the second read");
    assert_eq!(api.get(&path).await.body["server"]["status"], "running");
    let through_server = api.get(&format!("{path}/actions/{}", action["id"])).await;
    assert_eq!(through_server.body["action"]["status"], "success");

    let second = api.create_server(&cx23("cbx-2", &json!({}))).await;
    assert_ne!(
        second["server"]["public_net"]["ipv4"]["ip"],
        server["public_net"]["ipv4"]["ip"]
    );
    assert!(
        second["root_password"].is_string(),
        "no SSH key: a root password"
    );
    let foreign = api
        .get(&format!(
            "/servers/{}/actions/{}",
            second["server"]["id"], action["id"]
        ))
        .await;
    assert_eq!(foreign.status, 404);

    let deleted = api.delete(&path).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body["action"]["command"], "delete_server");
    assert_eq!(api.get(&path).await.status, 404);
    assert_eq!(
        api.get("/servers?name=cbx-1").await.body["servers"],
        json!([])
    );
    api.wait(&deleted.body["action"]).await;

    let second_id = second["server"]["id"].as_u64().unwrap();
    assert!(
        fake.remove_server(second_id),
        "gone behind the client's back"
    );
    let gone = api.delete(&format!("/servers/{second_id}")).await;
    assert_eq!((gone.status, gone.code()), (404, "not_found"));
    assert!(fake.servers().is_empty());
}

#[tokio::test]
async fn create_requests_are_checked_as_hetzner_checks_them() {
    let fake = FakeHetzner::start();
    let api = Api::new(&fake);
    api.create_server(&cx23("taken", &json!({}))).await;
    // Each case changes a valid request; `null` leaves a field out.
    let valid = json!({"name": "x", "server_type": "cx23", "image": "ubuntu-24.04"});
    for (change, status, code) in [
        (json!({"name": "taken"}), 409, "uniqueness_error"),
        (json!({"name": "not_a_hostname"}), 400, "invalid_input"),
        (json!({"name": null}), 400, "invalid_input"),
        (json!({"server_type": "cx99"}), 400, "invalid_input"),
        (json!({"image": "windows-11"}), 400, "invalid_input"),
        (json!({"location": "mars1"}), 400, "invalid_input"),
        (
            json!({"server_type": "cax11", "location": "ash"}),
            400,
            "invalid_input",
        ),
        (json!({"ssh_keys": ["nope"]}), 400, "invalid_input"),
        (json!({"labels": {"k": "a b"}}), 400, "invalid_input"),
        (json!({"networks": [42]}), 404, "not_found"),
    ] {
        let mut body = valid.clone();
        for (field, value) in change.as_object().unwrap() {
            body[field] = value.clone();
        }
        let refused = api.post("/servers", &body).await;
        assert_eq!((refused.status, refused.code()), (status, code), "{body}");
        assert!(refused.body["error"]["message"].is_string());
    }
    let not_json = api
        .http
        .post(format!("{}/servers", api.base))
        .bearer_auth(FakeHetzner::TOKEN)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let error: Value = not_json.json().await.unwrap();
    assert_eq!(error["error"]["code"], "json_error");
    let arm = api
        .create_server(&json!({"name": "arm", "server_type": "cax11", "image": "ubuntu-24.04"}))
        .await;
    assert_eq!(
        arm["server"]["image"]["architecture"], "arm",
        "the name's Arm image"
    );
    assert_eq!(fake.servers().len(), 2);
}

#[tokio::test]
async fn label_selectors_and_pages_select_servers_as_the_reference_describes() {
    let fake = FakeHetzner::start();
    let api = Api::new(&fake);
    fake.set_action_polls(0);
    for i in 0..7 {
        let pool = if i % 2 == 0 { "a" } else { "b" };
        let labels = if i < 3 {
            json!({"pool": pool, "keep": ""})
        } else {
            json!({"pool": pool})
        };
        api.create_server(&cx23(&format!("cbx-{i}"), &labels)).await;
    }
    for (selector, expected) in [
        ("pool=a", 4),
        ("pool==b", 3),
        ("pool!=a", 3),
        ("keep", 3),
        ("!keep", 4),
        ("pool in (a,b),!keep", 4),
        ("pool notin (a),keep", 1),
        ("pool=a,keep", 2),
    ] {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("label_selector", selector)
            .finish();
        let listed = api.get(&format!("/servers?{query}")).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        assert_eq!(
            listed.body["servers"].as_array().unwrap().len(),
            expected,
            "{selector}"
        );
    }
    let bad = api.get("/servers?label_selector=pool%20in%20(a").await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_input"));

    let mut names = Vec::new();
    let mut page = Some(1);
    while let Some(n) = page {
        let listed = api
            .get(&format!("/servers?per_page=3&page={n}&sort=name:desc"))
            .await;
        let meta = &listed.body["meta"]["pagination"];
        assert_eq!(
            (
                &meta["per_page"],
                &meta["last_page"],
                &meta["total_entries"]
            ),
            (&json!(3), &json!(3), &json!(7))
        );
        assert_eq!(
            meta["previous_page"],
            if n == 1 { Value::Null } else { json!(n - 1) }
        );
        for s in listed.body["servers"].as_array().unwrap() {
            names.push(s["name"].as_str().unwrap().to_owned());
        }
        page = meta["next_page"].as_u64();
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("cbx-{i}")).collect();
    assert_eq!(names, expected, "every server once, in the order asked");
    let running = api.get("/servers?status=running&status=off").await;
    assert_eq!(running.body["servers"].as_array().unwrap().len(), 7);
    assert_eq!(
        api.get("/servers?status=initializing").await.body["servers"],
        json!([])
    );
}

#[tokio::test]
async fn rate_limit_headers_count_down_and_a_spent_budget_is_refused() {
    let fake = FakeHetzner::start();
    let api = Api::new(&fake);
    let first = api.get("/locations").await;
    assert_eq!(first.header("ratelimit-limit"), 3600);
    assert_eq!(first.header("ratelimit-remaining"), 3599);

    fake.set_rate_limit(10, 3);
    for left in [2, 1, 0] {
        let answer = api.get("/locations").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("ratelimit-remaining"), left);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let refused = api.get("/locations").await;
    assert_eq!(
        (refused.status, refused.code()),
        (429, "rate_limit_exceeded")
    );
    assert_eq!(refused.header("ratelimit-remaining"), 0);
    assert_eq!(refused.header("ratelimit-limit"), 10);
    let reset = refused.header("ratelimit-reset");
    assert!(
        reset > now + 3000,
        "ten requests refill over an hour: {reset} vs {now}"
    );

    fake.set_rate_limit_refill(Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let refilled = api.get("/locations").await;
    assert_eq!(refilled.status, 200);
    assert_eq!(fake.count("GET /locations"), 6);
}

#[tokio::test]
async fn refusals_and_lost_replies_are_injected_per_route_and_body_field() {
    let fake = FakeHetzner::start();
    let api = Api::new(&fake);
    fake.inject(
        Fault::refuse(
            "POST /servers",
            403,
            "resource_limit_exceeded",
            "dedicated core limit exceeded",
        )
        .when("server_type", "ccx63")
        .times(2),
    );
    let big = json!({"name": "big", "server_type": "ccx63", "image": "ubuntu-24.04"});
    api.create_server(&cx23("small", &json!({}))).await;
    for _ in 0..2 {
        let refused = api.post("/servers", &big).await;
        assert_eq!(refused.status, 403);
        assert_eq!(
            refused.body["error"],
            json!({"code": "resource_limit_exceeded", "message": "dedicated core limit exceeded",
                   "details": {}})
        );
    }
    api.create_server(&big).await;
    assert!(fake.faults_spent());

    fake.inject(Fault::refuse(
        "GET /servers/{id}",
        503,
        "unavailable",
        "service unavailable",
    ));
    let unavailable = api.get("/servers/1").await;
    assert_eq!(
        (unavailable.status, unavailable.code()),
        (503, "unavailable")
    );

    fake.inject(Fault::drop_reply("POST /servers").when("labels.lost", "yes"));
    let lost = api
        .send(
            Method::POST,
            "/servers",
            Some(&cx23("lost", &json!({"lost": "yes"}))),
        )
        .await;
    let err = lost.err().expect("the reply is lost, not an HTTP error");
    assert!(err.status().is_none(), "{err}");
    let servers = fake.servers();
    let made = servers.iter().find(|s| s["name"] == "lost");
    assert!(made.is_some(), "the server was created all the same");
    let listed = api.get("/servers?name=lost").await;
    assert_eq!(listed.body["servers"][0]["labels"], json!({"lost": "yes"}));
    assert_eq!(
        fake.count("POST /servers"),
        5,
        "refused and dropped calls are counted"
    );
    let bodies: Vec<Value> = fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "POST /servers")
        .map(|c| c.body["name"].clone())
        .collect();
    assert_eq!(
        bodies,
        [
            json!("small"),
            json!("big"),
            json!("big"),
            json!("big"),
            json!("lost")
        ]
    );
}

#[tokio::test]
async fn server_types_carry_prices_per_location_as_decimal_strings() {
    let fake = FakeHetzner::start();
    let api = Api::new(&fake);
    let listed = api.get("/server_types?per_page=50").await;
    let types = listed.body["server_types"].as_array().unwrap();
    let names: Vec<&str> = types.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for wanted in [
        "cx23", "cx33", "cx53", "cpx22", "cpx32", "cpx62", "ccx13", "ccx23", "ccx33", "ccx43",
        "ccx53", "ccx63", "cax11", "cax21", "cax31", "cax41",
    ] {
        assert!(names.contains(&wanted), "{wanted} in {names:?}");
    }
    for t in types {
        let dedicated = t["name"].as_str().unwrap().starts_with("ccx");
        assert_eq!(
            t["cpu_type"],
            if dedicated { "dedicated" } else { "shared" }
        );
        let arm = t["name"].as_str().unwrap().starts_with("cax");
        assert_eq!(t["architecture"], if arm { "arm" } else { "x86" });
        let prices = t["prices"].as_array().unwrap();
        assert!(!prices.is_empty(), "{}", t["name"]);
        for price in prices {
            for period in ["price_hourly", "price_monthly"] {
                let net: f64 = price[period]["net"].as_str().unwrap().parse().unwrap();
                let gross: f64 = price[period]["gross"].as_str().unwrap().parse().unwrap();
                assert!(net > 0.0 && (gross / net - 1.19).abs() < 1e-6, "{price}");
            }
        }
    }
    let cax11 = api.get("/server_types?name=cax11").await.body["server_types"][0].clone();
    let located: Vec<&str> = cax11["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["location"].as_str().unwrap())
        .collect();
    assert_eq!(
        located,
        ["fsn1", "nbg1", "hel1"],
        "Arm servers are European only"
    );
    assert_eq!(
        api.get(&format!("/server_types/{}", cax11["id"]))
            .await
            .body["server_type"],
        cax11
    );

    let locations = api.get("/locations").await.body["locations"].clone();
    let zones: Vec<(&str, &str)> = locations
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["network_zone"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        zones,
        [
            ("fsn1", "eu-central"),
            ("nbg1", "eu-central"),
            ("hel1", "eu-central"),
            ("ash", "us-east"),
            ("hil", "us-west"),
            ("sin", "ap-southeast"),
        ]
    );
}

#[tokio::test]
async fn snapshots_of_servers_are_images_that_servers_can_be_created_from() {
    let fake = FakeHetzner::start();
    let api = Api::new(&fake);
    let system = api.get("/images?type=system&name=ubuntu-24.04").await;
    let archs: Vec<&Value> = system.body["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["architecture"])
        .collect();
    assert_eq!(archs, [&json!("x86"), &json!("arm")]);

    let created = api.create_server(&cx23("base", &json!({}))).await;
    let id = &created["server"]["id"];
    let taken = api
        .post(
            &format!("/servers/{id}/actions/create_image"),
            &json!({"type": "snapshot", "description": "crabbox base", "labels": {"crabbox": "base"}}),
        )
        .await;
    assert_eq!(taken.status, 201, "{}", taken.body);
    let image = &taken.body["image"];
    assert_eq!(
        (&image["type"], &image["status"]),
        (&json!("snapshot"), &json!("creating"))
    );
    assert_eq!(image["created_from"]["id"], *id);
    let from_creating = api
        .post(
            "/servers",
            &json!({"name": "early", "server_type": "cx23", "image": image["id"]}),
        )
        .await;
    assert_eq!(
        from_creating.code(),
        "invalid_input",
        "a snapshot is usable once taken"
    );

    api.wait(&taken.body["action"]).await;
    let snapshots = api
        .get("/images?type=snapshot&label_selector=crabbox%3Dbase")
        .await;
    let listed = &snapshots.body["images"];
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["status"], "available");
    assert_eq!(listed[0]["description"], "crabbox base");
    let copy = api
        .create_server(&json!({"name": "copy", "server_type": "cx33", "image": image["id"]}))
        .await;
    assert_eq!(copy["server"]["image"]["id"], image["id"]);

    let path = format!("/images/{}", image["id"]);
    assert_eq!(api.delete(&path).await.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
    let system_id = &system.body["images"][0]["id"];
    assert_eq!(
        api.delete(&format!("/images/{system_id}")).await.status,
        403
    );
    assert_eq!(fake.images().len(), 4, "the system images remain");
}

#[tokio::test]
async fn a_server_boots_into_a_runner_at_its_public_address_and_stops_when_deleted() {
    loopback_only!();
    let fake = FakeHetzner::start();
    let api = Api::new(&fake);
    let emulator = BootEmulator::watch(fake.cloud());
    let dir = tempfile::tempdir().unwrap();
    let key = keys::ensure_ed25519(dir.path(), "lease", "cbx-test").unwrap();
    let public_key = key.public_key().unwrap();
    let user_data = format!(
        "#cloud-config\npackage_update: false\nusers:\n  - name: crabbox\n    \
         ssh_authorized_keys:\n      - {public_key}\n"
    );
    let created = api
        .create_server(
            &json!({"name": "cbx-boot", "server_type": "cax21", "image": "ubuntu-24.04",
                               "location": "nbg1", "user_data": user_data}),
        )
        .await;
    let id = created["server"]["id"].to_string();
    let ip: Ipv4Addr = created["server"]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    api.wait(&created["action"]).await;
    let runner = emulator.wait_for_runner(&id, Duration::from_secs(10));
    assert_eq!(runner.address(), ip);
    assert_eq!(runner.region, "nbg1");
    assert_eq!(runner.user.as_deref(), Some("crabbox"));
    assert_eq!(runner.authorized_keys, vec![public_key]);
    TcpStream::connect((ip, 2222)).expect("the runner's sshd listens on the server's address");

    assert_eq!(api.delete(&format!("/servers/{id}")).await.status, 200);
    emulator.wait_for_shutdown(&id, Duration::from_secs(10));
    assert_eq!(
        fake.count("GET /servers"),
        0,
        "the emulator reads the fake's state, not its API"
    );
}

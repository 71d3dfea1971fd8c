//! The REST API of a real sluiced (the binary, started here with an API on
//! a loopback port and no IKE connections) against a real HTTPS client:
//! a property test throws well-formed, mutated and random bodies at the
//! endpoints that take input and checks that each is answered with a 2xx
//! or a 4xx carrying a JSON message, never a 5xx or a dropped connection,
//! and that sluiced keeps serving with its state intact. Needs no root
//! and binds nothing but the API's loopback port: connection bodies name
//! 198.18.0.1, which the test host does not have, so even a valid one is
//! refused (400, cannot bind); valid manual SAs are created.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use proptest::prelude::*;
use serde_json::{json, Value};
use sluice_api::client::{Client, Trust};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start(dir: &Path) -> (Daemon, Client) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let cfg = dir.join("sluiced.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nsa_table = \"{d}/sa-table\"\nstate_dir = \"{d}/state\"\nacquire_socket = \"sluice-api-test-{p}\"\n\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\nmax_body = 16384\n",
            d = dir.display(),
            p = std::process::id()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sluiced.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluiced"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        dir: dir.to_path_buf(),
    };
    let token = dir.join("state/api-token");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(&token) {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let c = Client::new(
                    &format!("https://127.0.0.1:{port}"),
                    Some(t.trim().to_string()),
                    &Trust::CaFile(dir.join("state/api-cert.pem")),
                    None,
                )
                .unwrap();
                return (d, c);
            }
        }
        assert!(
            Instant::now() < deadline,
            "sluiced did not come up: {}",
            std::fs::read_to_string(dir.join("sluiced.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn manual_sa() -> Value {
    json!({
        "name": "m", "local_addr": "198.18.0.1", "remote_addr": "198.18.0.2",
        "spi_in": 4097, "spi_out": 8193, "esp": "aes128gcm16",
        "encr_key_in": "00112233445566778899aabbccddeeff01020304",
        "encr_key_out": "ffeeddccbbaa99887766554433221100a0b0c0d0",
        "local_ts": ["198.19.1.0/24", "2001:db8:1::/64"],
        "remote_ts": ["198.19.2.0/24", "2001:db8:2::/64"]
    })
}

fn connection() -> Value {
    json!({
        "name": "c", "local_addr": "198.18.0.1", "remote_addr": "198.18.0.2",
        "local_id": "a.test", "remote_id": "b.test", "psk": "0123456789abcdef0123",
        "start_action": "none",
        "child": [{"name": "n", "local_ts": ["198.19.1.0/24"], "remote_ts": ["198.19.2.0/24"]}]
    })
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        "[ -~]{0,40}".prop_map(Value::from),
        "[0-9a-f]{0,80}".prop_map(Value::from),
        "(198\\.1[89]\\.[0-9]{1,3}\\.[0-9]{1,3}|2001:db8::[0-9a-f]{0,4})(/[0-9]{1,3})?"
            .prop_map(Value::from),
        prop_oneof![
            Just("aes128gcm16"),
            Just("aes256gcm16"),
            Just("aes128-sha256"),
            Just("chacha20poly1305"),
            Just("aes128gcm16-x25519"),
            Just("des")
        ]
        .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body: a valid object with some fields replaced, removed or added, or
/// random bytes.
fn body(base: Value) -> impl Strategy<Value = Vec<u8>> {
    let keys: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
    let n = keys.len();
    prop_oneof![
        4 => prop::collection::vec((0..n + 2, prop::option::of(value())), 0..4).prop_map(move |edits| {
            let mut o = base.clone();
            for (i, v) in edits {
                let m = o.as_object_mut().unwrap();
                let k = keys.get(i).cloned().unwrap_or_else(|| format!("extra{i}"));
                match v {
                    Some(v) => m.insert(k, v),
                    None => m.remove(&k),
                };
            }
            serde_json::to_vec(&o).unwrap()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => (0usize..40000).prop_map(|n| format!("{{\"name\": \"{}\"}}", "x".repeat(n)).into_bytes()),
    ]
}

fn answered_properly(r: &sluice_api::client::Response) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(r.status, 200 | 201 | 400 | 404 | 409 | 413),
        "status {}: {}",
        r.status,
        r.body
    );
    if r.status >= 400 {
        let msg = r.json()["error"].as_str().map(str::len).unwrap_or(0);
        prop_assert!(msg > 5, "no JSON message: {}", r.body);
    }
    Ok(())
}

#[test]
fn hostile_bodies_get_4xx_and_sluiced_keeps_serving() {
    let dir = std::env::temp_dir().join(format!("sluiced-api-test-{}", std::process::id()));
    let (mut d, c) = start(&dir);
    let created = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 160,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (any::<bool>(), body(manual_sa()), body(connection()));
    runner
        .run(&strategy, |(manual, m, conn)| {
            let (path, bytes) = if manual {
                ("/v1/manual-sas", m)
            } else {
                ("/v1/connections", conn)
            };
            let r = c
                .raw("POST", path, bytes, true)
                .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
            answered_properly(&r)?;
            if r.status == 201 {
                created.set(created.get() + 1);
                let v = r.json();
                let name = v["name"]
                    .as_str()
                    .or_else(|| v["connection"]["name"].as_str())
                    .unwrap_or_default()
                    .to_string();
                let d = c
                    .request("DELETE", &format!("{path}/{name}"), None)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(d.status, 204, "{}", d.body);
            }
            // A PUT with the same body, on a name that may not exist.
            if !manual {
                let r = c
                    .raw(
                        "PUT",
                        "/v1/connections/c",
                        serde_json::to_vec(&connection()).unwrap(),
                        true,
                    )
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                answered_properly(&r)?;
            }
            Ok(())
        })
        .unwrap();
    // The valid manual SA itself is accepted (the property above is not
    // vacuous), and sluiced is intact.
    let r = c
        .request("POST", "/v1/manual-sas", Some(&manual_sa()))
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let r = c.request("GET", "/v1/manual-sas", None).unwrap();
    assert_eq!(r.json().as_array().map(Vec::len), Some(1), "{}", r.body);
    let r = c.request("GET", "/v1/health", None).unwrap();
    assert_eq!(r.status, 200);
    assert!(d.child.try_wait().unwrap().is_none(), "sluiced exited");
    eprintln!(
        "{} of the generated bodies were valid and created (then deleted)",
        created.get()
    );
}

#[test]
fn requests_without_credentials_are_refused() {
    let dir = std::env::temp_dir().join(format!("sluiced-api-auth-{}", std::process::id()));
    let (_d, c) = start(&dir);
    let url = format!(
        "https://{}",
        std::fs::read_to_string(dir.join("sluiced.log"))
            .unwrap()
            .lines()
            .find_map(|l| l
                .split("addr=")
                .nth(1)
                .filter(|_| l.contains("API listening")))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
    );
    let anon = Client::new(
        &url,
        None,
        &Trust::CaFile(dir.join("state/api-cert.pem")),
        None,
    )
    .unwrap();
    let wrong = Client::new(
        &url,
        Some("not-the-token-not-the-token".into()),
        &Trust::CaFile(dir.join("state/api-cert.pem")),
        None,
    )
    .unwrap();
    for (m, p) in [
        ("GET", "/v1/connections"),
        ("POST", "/v1/connections"),
        ("DELETE", "/v1/connections/x"),
        ("GET", "/v1/ike-sas"),
        ("POST", "/v1/ike-sas/1/terminate"),
        ("GET", "/v1/child-sas"),
        ("POST", "/v1/manual-sas"),
        ("GET", "/v1/stats"),
        ("GET", "/v1/version"),
    ] {
        for cl in [&anon, &wrong] {
            let r = cl.request(m, p, None).unwrap();
            assert_eq!(r.status, 401, "{m} {p}: {}", r.body);
            assert!(r.json()["error"].as_str().unwrap().contains("Bearer"));
        }
    }
    assert_eq!(c.request("GET", "/v1/version", None).unwrap().status, 200);
}

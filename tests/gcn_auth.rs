//! NASA's GCN connection recipe (`[source] domain` + client id + secret: SASL
//! OAUTHBEARER with OIDC client credentials) against stand-ins for GCN that
//! run here: a real Apache Kafka broker with a SASL_PLAINTEXT + OAUTHBEARER
//! listener (`ALERTHOST_KAFKA_OAUTH=1 scripts/kafka.sh start`), and a local
//! OAuth 2.0 token endpoint (`tests/oidc/token_endpoint.py`).
//!
//! The host gets exactly what a GCN user gives it, plus three `KAFKA_*`
//! overrides that point the recipe at the stand-ins; everything else
//! (OAUTHBEARER, `sasl.oauthbearer.method=oidc`, the client id and secret) is
//! the recipe's own. The broker validates every token (Kafka's unsecured
//! validator: `sub`, an unexpired `exp`) and, with a maximum session lifetime,
//! drops connections whose token expired without re-authentication.
//!
//! The broker is started once per test process in its own state directory
//! under the target directory and stopped when the process exits. These tests
//! need `java`, `mvn` (to fetch Kafka's jars once) and `python3`; without
//! them they are skipped, except under `CI`, where they fail. The example
//! components must be built
//! (`cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml`).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use alerthost_tests::{
    Host, Kafka, Outgoing, alerthost_bin, count_saved, example, random_group, random_topic,
    saved_files, start_alerthost, toml_str, wait_for, write_config,
};

/// The client id the token endpoint knows.
const CLIENT_ID: &str = "alerthost-test-client";
/// Its secret.
const CLIENT_SECRET: &str = "alerthost-test-secret";
/// Long enough for a host to start, authenticate, join its group and handle
/// a few messages on a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The stand-ins for GCN

/// The broker's two listeners.
#[derive(Debug)]
struct OAuthBroker {
    /// PLAINTEXT, for the tests' own client.
    plaintext: String,
    /// SASL_PLAINTEXT with OAUTHBEARER, for the host.
    oauth: String,
}

fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program` is an executable file in a `PATH` directory.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Run `scripts/kafka.sh <args>` on the OAuth broker's state directory and
/// return its stdout; panic with its stderr if it fails.
fn kafka_sh(state_dir: &Path, args: &[&str]) -> String {
    let script = tests_dir().join("../scripts/kafka.sh");
    let mut command = Command::new(&script);
    command
        .args(args)
        .env("ALERTHOST_KAFKA_DIR", state_dir)
        .env("ALERTHOST_KAFKA_OAUTH", "1");
    // Settings meant for the developer's main broker must not leak into this one.
    for key in [
        "ALERTHOST_KAFKA_PORT",
        "ALERTHOST_KAFKA_CONTROLLER_PORT",
        "ALERTHOST_KAFKA_OAUTH_PORT",
        "ALERTHOST_KAFKA_PROPS",
    ] {
        command.env_remove(key);
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/kafka.sh {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The broker with an OAuth listener, started on first use; `None` (after a
/// note) when what it needs is missing, so the test is skipped, except under
/// `CI`. A broker this process starts is stopped when the process exits.
fn oauth_broker() -> Option<&'static OAuthBroker> {
    static BROKER: OnceLock<Option<OAuthBroker>> = OnceLock::new();
    BROKER
        .get_or_init(|| {
            let missing: Vec<&str> = ["java", "mvn", "python3"]
                .into_iter()
                .filter(|p| !on_path(p))
                .collect();
            if !missing.is_empty() {
                let note = format!(
                    "{} not found: the GCN authentication tests need a Kafka broker \
                     (java, mvn) and a token endpoint (python3)",
                    missing.join(", ")
                );
                assert!(std::env::var_os("CI").is_none(), "{note}");
                eprintln!("note: skipped: {note}");
                return None;
            }
            // <target>/<profile>/deps/<test> → <target>/alerthost-test-kafka-oauth
            let exe = std::env::current_exe().expect("the test executable's path");
            let state_dir = exe
                .ancestors()
                .nth(3)
                .map_or_else(std::env::temp_dir, Path::to_owned)
                .join("alerthost-test-kafka-oauth");
            let already_running = Command::new(tests_dir().join("../scripts/kafka.sh"))
                .arg("status")
                .env("ALERTHOST_KAFKA_DIR", &state_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let plaintext = kafka_sh(&state_dir, &["start"]);
            if !already_running {
                stop_at_exit(&state_dir);
            }
            let oauth = kafka_sh(&state_dir, &["addr", "oauth"]);
            Some(OAuthBroker { plaintext, oauth })
        })
        .as_ref()
}

/// A watchdog shell that stops the broker once this test process has exited
/// (a test binary has no hook that runs after its last test). It ignores
/// SIGINT and SIGHUP, so an interrupted `cargo test` still stops the broker.
fn stop_at_exit(state_dir: &Path) {
    static WATCHDOG: OnceLock<Child> = OnceLock::new();
    let child = Command::new("sh")
        .args([
            "-c",
            r#"trap '' INT HUP; while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" stop"#,
            "alerthost-test-kafka-oauth-watchdog",
        ])
        .arg(std::process::id().to_string())
        .arg(tests_dir().join("../scripts/kafka.sh"))
        .env("ALERTHOST_KAFKA_DIR", state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the watchdog that stops the OAuth broker");
    // Kept, never waited for: it outlives this process by design.
    let _ = WATCHDOG.set(child);
}

/// `let (kafka, broker) = require_oauth_broker!();`: a client of the
/// broker's PLAINTEXT listener and the broker, or return (skip).
macro_rules! require_oauth_broker {
    () => {
        match oauth_broker() {
            Some(broker) => (Kafka::new(&broker.plaintext), broker),
            None => return,
        }
    };
}

/// One request the token endpoint answered.
#[derive(Debug)]
struct TokenRequest {
    client_id: Option<String>,
    /// How the client authenticated: `basic` or `form`.
    auth: Option<String>,
    grant_type: Option<String>,
    status: u64,
}

/// `tests/oidc/token_endpoint.py`, running; killed when dropped.
#[derive(Debug)]
struct TokenEndpoint {
    child: Child,
    /// Its stdout: the URL, then one JSON line per request.
    out: PathBuf,
    url: String,
    _dir: tempfile::TempDir,
}

impl TokenEndpoint {
    /// Start one that knows [`CLIENT_ID`] and [`CLIENT_SECRET`] and issues
    /// tokens valid for `lifetime`.
    fn start(lifetime: Duration) -> Self {
        let dir = tempfile::tempdir().expect("a directory for the token endpoint");
        let out = dir.path().join("stdout");
        let script = tests_dir().join("oidc/token_endpoint.py");
        let child = Command::new("python3")
            .arg(&script)
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            .arg("--lifetime")
            .arg(lifetime.as_secs().to_string())
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("the token endpoint's stdout file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let mut endpoint = TokenEndpoint {
            child,
            out,
            url: String::new(),
            _dir: dir,
        };
        wait_for("the token endpoint to print its URL", SETTLE, || {
            if let Ok(Some(status)) = endpoint.child.try_wait() {
                panic!("the token endpoint exited ({status})");
            }
            !endpoint.lines().is_empty()
        });
        endpoint.url = endpoint.lines()[0].clone();
        endpoint
    }

    /// The complete lines it has printed so far.
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .split_inclusive('\n')
            .filter_map(|line| line.strip_suffix('\n'))
            .map(str::to_owned)
            .collect()
    }

    /// Every request answered so far.
    fn requests(&self) -> Vec<TokenRequest> {
        self.lines()
            .iter()
            .skip(1)
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("token endpoint line {line:?}: {e}"));
                let text = |key: &str| v[key].as_str().map(str::to_owned);
                TokenRequest {
                    client_id: text("client_id"),
                    auth: text("auth"),
                    grant_type: text("grant_type"),
                    status: v["status"].as_u64().expect("a status"),
                }
            })
            .collect()
    }

    /// The tokens issued to [`CLIENT_ID`] by the client credentials grant.
    fn tokens_issued(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r.status == 200
                    && r.client_id.as_deref() == Some(CLIENT_ID)
                    && r.grant_type.as_deref() == Some("client_credentials")
            })
            .count()
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- token endpoint requests ---\n{}\n--- end ---",
                self.lines().join("\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The host, configured as a GCN user would

/// `[source] domain = "gcn.example"` with a client id, the `save-all`
/// example on `topic`, saving into `save_dir`.
fn gcn_config(topic: &str, group: &str, save_dir: &Path) -> String {
    format!(
        r#"[source]
domain = "gcn.example"
client_id = {client_id}
topics = [{topic}]
group_id = {group}
commit_interval_ms = 200

[sinks.files]
type = "file"
dir = {dir}

[[handler]]
name = "save-all"
component = {component}
topics = [{topic}]
save_to = "files"
"#,
        client_id = toml_str(CLIENT_ID),
        topic = toml_str(topic),
        group = toml_str(group),
        dir = toml_str(save_dir.to_str().expect("a UTF-8 path")),
        component = toml_str(example("save_all").to_str().expect("a UTF-8 path")),
    )
}

/// `alerthost run` on `config` with the secret in `GCN_CLIENT_SECRET` and
/// the `KAFKA_*` overrides that point NASA's recipe at the local broker and
/// token endpoint.
fn start_gcn_host(
    config: &Path,
    broker: &OAuthBroker,
    endpoint: &TokenEndpoint,
    secret: &str,
) -> Host {
    let config = config.to_str().expect("a UTF-8 config path");
    start_alerthost(
        &["run", "--config", config],
        &[
            // A GCN_CLIENT_ID in the developer's environment would win over
            // `client_id`; this one says the same.
            ("GCN_CLIENT_ID", CLIENT_ID),
            ("GCN_CLIENT_SECRET", secret),
            ("KAFKA_BOOTSTRAP_SERVERS", &broker.oauth),
            // GCN is sasl_ssl; the local listener has no TLS, so only the
            // transport differs from the recipe.
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", &endpoint.url),
        ],
    )
}

/// Real GCN notices from `tests/data/samples`: the first `per_kind` files
/// (by name) of each format, as messages for partition 0.
fn sample_alerts(per_kind: usize) -> Vec<Outgoing> {
    let mut alerts = Vec::new();
    for kind in ["binary", "json", "voevent"] {
        let dir = tests_dir().join("data/samples").join(kind);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        for file in files.into_iter().take(per_kind) {
            let bytes = std::fs::read(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            alerts.push(Outgoing::new(0, bytes));
        }
    }
    alerts
}

/// Produce `alerts` to partition 0 of `topic` and return what each offset holds.
fn produce(kafka: &Kafka, topic: &str, alerts: &[Outgoing]) -> BTreeMap<i64, Vec<u8>> {
    let offsets = kafka.produce(topic, alerts);
    offsets
        .into_iter()
        .zip(alerts.iter().map(|a| a.value.clone()))
        .collect()
}

/// Assert that `dir` holds exactly `expected` of `topic`, byte for byte.
fn assert_saved(dir: &Path, topic: &str, expected: &BTreeMap<i64, Vec<u8>>) {
    let saved = saved_files(dir);
    let got: Vec<i64> = saved.keys().map(|k| k.offset).collect();
    let want: Vec<i64> = expected.keys().copied().collect();
    assert_eq!(got, want, "saved offsets of {topic}");
    for (key, path) in saved {
        assert_eq!(key.topic, topic);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(
            bytes == expected[&key.offset],
            "{} does not hold the bytes of offset {}",
            path.display(),
            key.offset
        );
    }
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn gcn_oidc_recipe_consumes_through_a_token_endpoint() {
    let (kafka, broker) = require_oauth_broker!();
    let endpoint = TokenEndpoint::start(Duration::from_secs(3600));
    let topic = random_topic();
    kafka.create_topic(&topic, 1);
    let alerts = sample_alerts(2);
    let expected = produce(&kafka, &topic, &alerts);

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let config = write_config(dir.path(), &gcn_config(&topic, &random_group(), &saved));
    let mut host = start_gcn_host(&config, broker, &endpoint, CLIENT_SECRET);
    host.wait_until("every sample alert to be saved", SETTLE, || {
        count_saved(&saved) == expected.len()
    });
    host.stop_cleanly();

    assert_saved(&saved, &topic, &expected);
    let requests = endpoint.requests();
    assert!(
        endpoint.tokens_issued() >= 1,
        "the host got no token from the endpoint: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.status == 200 && r.auth.as_deref() == Some("basic")),
        "every token request should succeed with HTTP basic authentication: {requests:?}"
    );
}

#[test]
fn rejected_credentials_give_a_clear_auth_error() {
    let (kafka, broker) = require_oauth_broker!();
    let endpoint = TokenEndpoint::start(Duration::from_secs(3600));
    let topic = random_topic();
    kafka.create_topic(&topic, 1);

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let config = write_config(dir.path(), &gcn_config(&topic, &random_group(), &saved));
    // Built before the clock starts: only the host's own time counts.
    alerthost_bin();
    let started = Instant::now();
    let mut host = start_gcn_host(&config, broker, &endpoint, "not-the-secret");
    let status = host.wait_exit(Duration::from_secs(30));
    let stderr = host.stderr();
    assert!(
        !status.success(),
        "the host should fail, but it ended with {status} after {:?}; stderr:\n{stderr}",
        started.elapsed()
    );
    // The host's own line, with the endpoint's OAuth error in it:
    // "kafka authentication failed: Failed to acquire SASL OAUTHBEARER token:
    // {"error": "invalid_client", ...} (check the client id and secret)".
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("kafka authentication failed")
                && line.contains("invalid_client")
                && line.contains("check the client id and secret")),
        "stderr should name the authentication failure and the endpoint's answer:\n{stderr}"
    );
    assert!(
        stderr.lines().any(
            |line| line.starts_with("error: cannot authenticate to Kafka at")
                && line.contains("invalid_client")
        ),
        "the final error should say authentication failed:\n{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a refused token should stop the host at once, not after the connect timeout: {:?}",
        started.elapsed()
    );
    let requests = endpoint.requests();
    assert!(
        !requests.is_empty()
            && requests
                .iter()
                .all(|r| r.status == 401 && r.client_id.as_deref() == Some(CLIENT_ID)),
        "the endpoint should have refused every request: {requests:?}"
    );
    assert_eq!(count_saved(&saved), 0);
}

#[test]
fn token_is_refreshed_before_it_expires() {
    const LIFETIME: Duration = Duration::from_secs(10);
    let (kafka, broker) = require_oauth_broker!();
    let endpoint = TokenEndpoint::start(LIFETIME);
    let topic = random_topic();
    kafka.create_topic(&topic, 1);
    let mut expected = produce(&kafka, &topic, &sample_alerts(1));

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let config = write_config(dir.path(), &gcn_config(&topic, &random_group(), &saved));
    let started = Instant::now();
    let mut host = start_gcn_host(&config, broker, &endpoint, CLIENT_SECRET);
    host.wait_until("the first alerts to be saved", SETTLE, || {
        count_saved(&saved) == expected.len()
    });

    // An alert after 1, 2 and 3 lifetimes (the second sample of each
    // format): each is read on connections whose first token has expired, and
    // the broker drops a connection that does not re-authenticate in time.
    let late = sample_alerts(2);
    for lifetimes in 1..=3u32 {
        let at = LIFETIME * lifetimes + Duration::from_secs(1);
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        let alert = late[2 * lifetimes as usize - 1].clone();
        expected.extend(produce(&kafka, &topic, &[alert]));
        host.wait_until(
            &format!("the alert produced after {lifetimes} token lifetimes to be saved"),
            SETTLE,
            || count_saved(&saved) == expected.len(),
        );
    }
    host.stop_cleanly();

    assert_saved(&saved, &topic, &expected);
    let issued = endpoint.tokens_issued();
    assert!(
        issued >= 3,
        "the host should have fetched a new token before each expired, got {issued} in {:?}: {:?}",
        started.elapsed(),
        endpoint.requests()
    );
    let stderr = host.stderr();
    assert!(
        !stderr.contains("authentication failed"),
        "no authentication should fail:\n{stderr}"
    );
}

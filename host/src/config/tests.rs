use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    std::fs::write(dir.join("h.wasm"), b"\0asm").unwrap();
    let path = dir.join("alerthost.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn load(text: &str, env: &[(&str, &str)]) -> anyhow::Result<Plan> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), text);
    let config: Config = toml::from_str(&std::fs::read_to_string(&path).unwrap())?;
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config.validate(&path, &env)
}

const MINIMAL: &str = r#"
[source]
bootstrap_servers = "127.0.0.1:9092"
topics = ["a", "^gcn\\.notices\\..*"]

[sinks.archive]
type = "file"
dir = "alerts"

[[handler]]
name = "h"
component = "h.wasm"
topics = ["a"]
save_to = "archive"
"#;

#[test]
fn readme_shape_validates_with_defaults() {
    let plan = load(MINIMAL, &[]).unwrap();
    assert_eq!(plan.kafka["bootstrap.servers"], "127.0.0.1:9092");
    assert_eq!(plan.start, StartAt::Earliest);
    assert_eq!(plan.group_id, None);
    assert_eq!(plan.handlers[0].config.on_error, OnError::DeadLetter);
    assert_eq!(plan.handlers[0].dead_letter, "dead-letter.h");
    assert!(plan.topics[1].matches("gcn.notices.icecube.lvk_nu_track_search"));
    assert!(!plan.topics[1].matches("gcn.classic.text.X"));
}

#[test]
fn unknown_key_is_named() {
    let text = MINIMAL.replace(
        "topics = [\"a\"]\nsave_to",
        "topics = [\"a\"]\nsave_too = 1\nsave_to",
    );
    let err = toml::from_str::<Config>(&text).unwrap_err().to_string();
    assert!(err.contains("save_too"), "{err}");
}

#[test]
fn gcn_domain_uses_the_nasa_recipe_and_env_secret() {
    let text = MINIMAL.replace(
        "bootstrap_servers = \"127.0.0.1:9092\"",
        "domain = \"test.gcn.nasa.gov\"\nclient_id = \"abc\"",
    );
    let err = load(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("GCN_CLIENT_SECRET"), "{err}");
    let plan = load(&text, &[("GCN_CLIENT_SECRET", "s3cret")]).unwrap();
    assert_eq!(plan.kafka["bootstrap.servers"], "kafka.test.gcn.nasa.gov");
    assert_eq!(plan.kafka["sasl.mechanisms"], "OAUTHBEARER");
    assert_eq!(plan.kafka["sasl.oauthbearer.method"], "oidc");
    assert_eq!(
        plan.kafka["sasl.oauthbearer.token.endpoint.url"],
        "https://auth.test.gcn.nasa.gov/oauth2/token"
    );
    assert_eq!(plan.kafka["sasl.oauthbearer.client.secret"], "s3cret");
    assert_eq!(plan.kafka["security.protocol"], "sasl_ssl");
    assert!(!plan.kafka.contains_key("group.id"));
}

#[test]
fn kafka_env_follows_gcn_kafka_config_from_env() {
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", "b:1"),
        ("KAFKA_SASL_OAUTHBEARER_CLIENT__ID", "x"),
        ("KAFKA_SOME___UNDERSCORE", "y"),
        ("OTHER", "z"),
    ];
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        kafka_env_overrides(&env),
        [
            ("bootstrap.servers".to_string(), "b:1".to_string()),
            ("sasl.oauthbearer.client-id".to_string(), "x".to_string()),
            ("some_underscore".to_string(), "y".to_string()),
        ]
    );
    let plan = load(MINIMAL, &[("KAFKA_BOOTSTRAP_SERVERS", "other:9")]).unwrap();
    assert_eq!(plan.kafka["bootstrap.servers"], "other:9");
}

#[test]
fn cross_references_are_checked_with_names() {
    let cases = [
        (
            MINIMAL.replace("save_to = \"archive\"", "save_to = \"nope\""),
            "\"nope\"",
        ),
        (
            MINIMAL.replace("save_to = \"archive\"", "forward_to = [\"archive\"]"),
            "file sink",
        ),
        (
            MINIMAL.replace("component = \"h.wasm\"", "component = \"missing.wasm\""),
            "missing.wasm",
        ),
        (
            MINIMAL.replace(
                "topics = [\"a\"]\nsave_to",
                "topics = [\"bad topic\"]\nsave_to",
            ),
            "bad topic",
        ),
        (
            MINIMAL.replace("\"^gcn\\\\.notices\\\\..*\"", "\"^(\""),
            "not a valid regex",
        ),
        (
            MINIMAL.replace(
                "[source]",
                "[source]\nlibrdkafka = { \"enable.auto.commit\" = \"true\" }",
            ),
            "enable.auto.commit",
        ),
    ];
    for (text, want) in cases {
        let err = format!("{:#}", load(&text, &[]).unwrap_err());
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
}

/// Field names of a config table, read from serde's own "unknown field"
/// error, so the list cannot drift from the structs.
fn fields_of(section: &str) -> Vec<String> {
    let text = match section {
        "source" => "[source]\nzzz = 1\n".to_owned(),
        "handler" => "[source]\ntopics = []\n[[handler]]\nzzz = 1\n".to_owned(),
        "limits" => "[source]\ntopics = []\n[[handler]]\nname = \"h\"\ncomponent = \"c\"\ntopics = []\n[handler.limits]\nzzz = 1\n".to_owned(),
        "state" => "[source]\ntopics = []\n[[handler]]\nname = \"h\"\ncomponent = \"c\"\ntopics = []\n[handler.state]\nzzz = 1\n".to_owned(),
        "runtime" => "[source]\ntopics = []\n[runtime]\nzzz = 1\n".to_owned(),
        "metrics" => "[source]\ntopics = []\n[metrics]\nzzz = 1\n".to_owned(),
        _ => unreachable!(),
    };
    let err = toml::from_str::<Config>(&text).unwrap_err().to_string();
    let expected = err
        .split("`zzz`, expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("no field list in: {err}"));
    expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, name)| name.to_owned())
        .collect()
}

#[test]
fn readme_documents_every_config_key() {
    let readme = include_str!("../../../README.md");
    let mut missing = Vec::new();
    for section in ["source", "handler", "limits", "state", "runtime", "metrics"] {
        let fields = fields_of(section);
        assert!(!fields.is_empty(), "{section}: {fields:?}");
        for field in fields {
            if !readme.contains(&format!("`{field}`"))
                && !readme.contains(&format!(".{field}`"))
                && !readme.contains(&format!("{field}`"))
            {
                missing.push(format!("{section}.{field}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README's configuration reference lacks {missing:?}"
    );
}

const WITH_GROUP: &str = r#"
[source]
bootstrap_servers = "127.0.0.1:9092"
topics = ["a"]
group_id = "archive"

[[handler]]
name = "h"
component = "h.wasm"
topics = ["a"]
"#;

#[test]
fn static_membership_is_derived_from_host_and_config_by_default() {
    let plan = load(WITH_GROUP, &[]).unwrap();
    let id = plan.kafka["group.instance.id"].clone();
    let host = std::process::Command::new("uname")
        .arg("-n")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap();
    assert_eq!(host_name(), host);
    assert!(
        id.starts_with("alerthost-") && id.contains(host.split('.').next().unwrap()),
        "{id} names the host {host}"
    );
    assert_eq!(plan.instance_id.as_deref(), Some(id.as_str()));
    // The same config file and group give the same member after a restart;
    // another config file or group on the same host gives another.
    let path = Path::new("/etc/alerthost/alerthost.toml");
    let same = derived_instance_id("gcn-1", path, "archive");
    assert_eq!(same, derived_instance_id("gcn-1", path, "archive"));
    assert!(same.starts_with("alerthost-gcn-1-"), "{same}");
    assert_ne!(
        same,
        derived_instance_id("gcn-1", Path::new("/etc/alerthost/b.toml"), "archive")
    );
    assert_ne!(same, derived_instance_id("gcn-1", path, "other"));
    assert_ne!(same, derived_instance_id("gcn-2", path, "archive"));
    // Whatever the host name holds, the id is one Kafka accepts.
    let odd = derived_instance_id("host name/ü", path, "archive");
    assert!(
        odd.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "{odd}"
    );
}

#[test]
fn instance_id_is_overridable_or_off_and_needs_a_group() {
    let with = |line: &str| WITH_GROUP.replace("group_id = \"archive\"", line);
    let plan = load(
        &with("group_id = \"archive\"\ninstance_id = \"gcn-archive-1\""),
        &[],
    )
    .unwrap();
    assert_eq!(plan.kafka["group.instance.id"], "gcn-archive-1");
    let plan = load(&with("group_id = \"archive\"\ninstance_id = \"\""), &[]).unwrap();
    assert!(!plan.kafka.contains_key("group.instance.id"));
    assert_eq!(plan.instance_id, None);
    // The environment wins, as every KAFKA_* override does.
    let plan = load(WITH_GROUP, &[("KAFKA_GROUP_INSTANCE_ID", "from-env")]).unwrap();
    assert_eq!(plan.kafka["group.instance.id"], "from-env");
    // No group, no static membership.
    let plan = load(MINIMAL, &[]).unwrap();
    assert!(!plan.kafka.contains_key("group.instance.id"));

    let cases = [
        (with("instance_id = \"x\""), "needs a `group_id`"),
        (
            with("group_id = \"archive\"\ninstance_id = \"a b\""),
            "\"a b\" is not a valid group.instance.id",
        ),
        (
            with("group_id = \"archive\"\nlibrdkafka = { \"group.instance.id\" = \"x\" }"),
            "`instance_id`",
        ),
    ];
    for (text, want) in cases {
        let err = format!("{:#}", load(&text, &[]).unwrap_err());
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
}

#[test]
fn metrics_listen_is_checked_when_loaded() {
    let plan = load(MINIMAL, &[]).unwrap();
    assert_eq!(plan.metrics_listen, None);
    let text = format!("{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n");
    let plan = load(&text, &[]).unwrap();
    assert_eq!(plan.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
    for bad in [
        "9464",
        "localhost",
        "127.0.0.1:http",
        ":9464",
        "127.0.0.1:70000",
    ] {
        let text = format!("{MINIMAL}\n[metrics]\nlisten = \"{bad}\"\n");
        let err = format!("{:#}", load(&text, &[]).unwrap_err());
        assert!(
            err.contains("[metrics] listen") && err.contains(bad),
            "want the key and {bad:?} in: {err}"
        );
    }
}

#[test]
fn state_settings_are_checked_naming_the_file_handler_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("max_keys = 0", "`max_keys` must be greater than 0"),
        (
            "max_value_kib = 2000000",
            "`max_value_kib` = 2000000 is over",
        ),
        (
            "changelog = \"bad topic\"",
            "`changelog` = \"bad topic\" is not a valid Kafka topic name",
        ),
    ];
    for (setting, want) in cases {
        let path = write(
            dir.path(),
            &format!("{MINIMAL}\n[handler.state]\n{setting}\n"),
        );
        let err = format!("{:#}", Config::load(&path).unwrap_err());
        for part in [&path.display().to_string(), "`h`", "[handler.state]", want] {
            assert!(err.contains(part), "want {part:?} in: {err}");
        }
    }
    let plan = load(MINIMAL, &[]).unwrap();
    assert_eq!(plan.handlers[0].config.state, StateConfig::default());
    assert!(plan.state_dir.ends_with("state"), "{:?}", plan.state_dir);
}

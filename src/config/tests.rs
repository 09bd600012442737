use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_the_spec_defaults() {
    let c = Config::load(None, env(&[])).unwrap();
    assert_eq!(c, Config::default());
    assert!(c.embedded_broker());
    assert_eq!(c.max_clock_skew, Duration::from_secs(300));
    assert_eq!(c.memory_budget(), 256 << 20);
}

#[test]
fn environment_overrides_every_kind_of_key() {
    let c = Config::load(
        None,
        env(&[
            ("LEADSCORE__KAFKA__BROKERS", "127.0.0.1:9092"),
            ("LEADSCORE__CLOCK", "event"),
            ("LEADSCORE__MAX_CLOCK_SKEW", "2m"),
            ("LEADSCORE__BATCH__MAX_EVENTS", "250"),
            ("LEADSCORE__KAFKA__CONSUMER__FETCH_WAIT_MAX_MS", "10"),
            ("OTHER__IGNORED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(c.clock, ClockMode::Event);
    assert_eq!(c.max_clock_skew, Duration::from_secs(120));
    assert_eq!(c.batch.max_events, 250);
    assert_eq!(
        c.kafka
            .consumer
            .get("fetch.wait.max.ms")
            .map(String::as_str),
        Some("10")
    );
}

#[test]
fn errors_name_the_key() {
    let err = |pairs: &[(&str, &str)]| Config::load(None, env(pairs)).unwrap_err().to_string();
    assert!(err(&[("LEADSCORE__HTTP__LISTEN", "nowhere")]).starts_with("http.listen:"));
    assert!(err(&[("LEADSCORE__TOPICS__OUTPUT", "page-visits")]).contains("topics.output"));
    assert!(err(&[("LEADSCORE__STATE__MEMORY_BUDGET", "lots")]).starts_with("state.memory_budget:"));
    assert!(err(&[("LEADSCORE__BATCH__MAX_EVENTS", "many")])
        .starts_with("LEADSCORE__BATCH__MAX_EVENTS:"));
    assert!(err(&[("LEADSCORE__CLOCK", "lunar")]).contains("lunar"));
    assert!(err(&[("LEADSCORE__KAFKA__GROUP_ID", " ")]).starts_with("kafka.group_id:"));
}

#[test]
fn unknown_keys_in_the_file_are_rejected_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[kafka]\nbrokerz = \"x\"\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(e.contains("brokerz"), "{e}");
}

#[test]
fn a_bad_value_in_the_file_or_the_environment_names_its_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "max_clock_skew = \"5\"\n[state]\nmemory_budget = 5\n",
    )
    .unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    let file = path.display().to_string();
    assert!(e.starts_with(&format!("{file}: max_clock_skew: ")), "{e}");
    std::fs::write(&path, "[state]\nmemory_budget = 5\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{file}: state.memory_budget: ")),
        "{e}"
    );
    // Set by a variable, the key is named with the variable.
    let e = Config::load(
        Some(&path),
        env(&[
            ("LEADSCORE__STATE__MEMORY_BUDGET", "1GiB"),
            ("LEADSCORE__DEDUPE_WINDOW", "soon"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("LEADSCORE__DEDUPE_WINDOW: dedupe_window: "),
        "{e}"
    );
}

#[test]
fn librdkafka_properties_take_numbers_and_booleans_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = "[kafka.consumer]\n\"fetch.wait.max.ms\" = 10\n\"enable.partition.eof\" = true\n\
                [kafka.producer]\n\"linger.ms\" = \"5\"\n";
    std::fs::write(&path, text).unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap();
    let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned();
    assert_eq!(
        get(&c.kafka.consumer, "fetch.wait.max.ms").as_deref(),
        Some("10")
    );
    assert_eq!(
        get(&c.kafka.consumer, "enable.partition.eof").as_deref(),
        Some("true")
    );
    assert_eq!(get(&c.kafka.producer, "linger.ms").as_deref(), Some("5"));
    std::fs::write(&path, "[kafka.consumer]\n\"a.b\" = [1]\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(
        e.contains("kafka.consumer: `a.b` must be a string, number or boolean"),
        "{e}"
    );
}

#[test]
fn rules_path_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "rules = \"my-rules.toml\"\n").unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap();
    assert_eq!(c.rules, dir.path().join("my-rules.toml"));
}

#[test]
fn sizes() {
    assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
    assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
    assert_eq!(parse_bytes("4096"), Ok(4096));
    assert!(parse_bytes("12 parsecs").is_err());
}

#[test]
fn the_example_file_documents_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/leadscore.example.toml");
    let mut c = Config::load(Some(&path), Vec::new()).unwrap();
    assert_eq!(c.rules, path.parent().unwrap().join("rules.toml"));
    c.rules = Config::default().rules;
    assert_eq!(c, Config::default());
    let text = std::fs::read_to_string(&path).unwrap();
    let documented = toml::Table::try_from(Config::default()).unwrap();
    for (key, value) in &documented {
        assert!(
            text.contains(&format!("{key} =")) || value.is_table(),
            "{key} is not documented"
        );
        if let Some(section) = value.as_table() {
            assert!(
                text.contains(&format!("[{key}]")),
                "[{key}] is not documented"
            );
            for k in section.keys() {
                assert!(
                    text.contains(&format!("\n{k} =")) || section[k].is_table(),
                    "{key}.{k} is not documented"
                );
            }
        }
    }
}

//! The deployment files (`deploy/`, `docker-compose.yml`) agree with the
//! service and with each other: they parse, name the right image, port and
//! state path, their configs and rules load, and the dashboard and alert
//! rules use only metrics the service exports. promtool checks run when
//! installed (CI installs it).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use leadscore::config::Config;
use leadscore::metrics::{Metrics, NAMES};
use leadscore::rules::RuleSet;
use serde_norway::Value;

const PORT: &str = "9464";
const STATE: &str = "/var/lib/leadscore";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every document of a multi-document YAML file.
fn yaml_docs(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|d| {
            <Value as serde::Deserialize>::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A YAML sequence of strings.
fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a sequence: {v:?}"))
        .iter()
        .map(|x| str_of(x, "sequence item"))
        .collect()
}

fn str_of<'v>(v: &'v Value, what: &str) -> &'v str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

/// A config file's text parsed as the service would (no environment).
fn config_from(text: &str) -> Config {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("leadscore.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path), Vec::new()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn assert_service_config(config: &Config, what: &str) {
    assert_eq!(config.state.dir, Path::new(STATE), "{what}: state dir");
    assert_eq!(
        config.http.listen,
        format!("0.0.0.0:{PORT}"),
        "{what}: HTTP reachable from outside the container"
    );
    assert!(!config.embedded_broker(), "{what}: names a real broker");
}

#[test]
fn the_dockerfile_builds_in_two_stages_and_runs_unprivileged_with_state_on_a_volume() {
    let text = read("deploy/Dockerfile");
    assert!(text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")) >= 2);
    assert!(text.contains(&format!("EXPOSE {PORT}")), "{text}");
    assert!(text.contains(&format!("VOLUME [\"{STATE}\"]")), "{text}");
    assert!(text.contains("USER 10001"), "{text}");
    // Everything the build copies from the repository exists.
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(root().join(source).exists(), "{line}: {source} is missing");
        }
    }
    let config = config_from(&read("deploy/leadscore.toml"));
    assert_service_config(&config, "deploy/leadscore.toml");
    assert!(text.contains("/etc/leadscore/leadscore.toml"));
}

#[test]
fn the_compose_stack_wires_kafka_leadscore_prometheus_and_grafana() {
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    for name in ["kafka", "kafka-init", "leadscore", "prometheus", "grafana"] {
        assert!(services.get(name).is_some(), "service {name} missing");
    }
    let kafka = &services["kafka"]["environment"];
    assert!(
        str_of(&kafka["KAFKA_PROCESS_ROLES"], "roles").contains("controller"),
        "KRaft"
    );
    let ls = &services["leadscore"];
    assert_eq!(
        str_of(&ls["build"]["dockerfile"], "dockerfile"),
        "deploy/Dockerfile"
    );
    assert_eq!(str_of(&ls["image"], "image"), "leadscore:latest");
    assert_eq!(
        str_of(&ls["environment"]["LEADSCORE__HTTP__LISTEN"], "listen"),
        format!("0.0.0.0:{PORT}")
    );
    let ports: Vec<&str> = strings(&ls["ports"]);
    assert!(
        ports
            .iter()
            .any(|p| p.ends_with(&format!(":{PORT}:{PORT}"))),
        "{ports:?}"
    );
    let volumes: Vec<&str> = strings(&ls["volumes"]);
    assert!(
        volumes.iter().any(|v| v.ends_with(&format!(":{STATE}"))),
        "{volumes:?}"
    );
    // Bind mounts point at files of this repository.
    for (name, service) in services.as_mapping().unwrap() {
        for v in service["volumes"].as_sequence().into_iter().flatten() {
            let v = v.as_str().unwrap();
            if let Some(source) = v.strip_prefix("./") {
                let source = source.split(':').next().unwrap();
                assert!(root().join(source).exists(), "{name:?}: {v}");
            }
        }
    }
    // Co-partitioned inputs: the same partition count on all four topics;
    // the changelog is compacted.
    let init = services["kafka-init"]["command"][0].as_str().unwrap();
    assert!(
        init.contains("for t in page-visits email-clicks form-submissions purchases"),
        "{init}"
    );
    let input_line = init.lines().find(|l| l.contains("--topic $$t")).unwrap();
    assert!(input_line.contains("--partitions 6"), "{input_line}");
    let changelog = init
        .lines()
        .find(|l| l.contains("leadscore-changelog"))
        .unwrap();
    assert!(changelog.contains("cleanup.policy=compact"), "{changelog}");
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let target = &prom["scrape_configs"][0]["static_configs"][0]["targets"][0];
    assert_eq!(str_of(target, "scrape target"), format!("leadscore:{PORT}"));
}

#[test]
fn the_kubernetes_manifests_agree_on_image_port_probes_and_paths() {
    let kustomization = yaml("deploy/k8s/kustomization.yaml");
    let mut docs = Vec::new();
    for r in kustomization["resources"].as_sequence().unwrap() {
        docs.extend(yaml_docs(&format!("deploy/k8s/{}", str_of(r, "resource"))));
    }
    let kind = |k: &'static str| docs.iter().filter(move |d| d["kind"] == k);
    let sts = kind("StatefulSet").next().expect("a StatefulSet");
    let pod = &sts["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(str_of(&container["image"], "image").starts_with("leadscore:"));
    let port = &container["ports"][0];
    assert_eq!(port["containerPort"].as_u64(), Some(PORT.parse().unwrap()));
    let port_name = str_of(&port["name"], "port name");
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(str_of(&get["path"], probe), path);
        assert_eq!(str_of(&get["port"], probe), port_name);
    }
    assert!(container["resources"]["requests"].get("memory").is_some());
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let mount = |name: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| str_of(&m["mountPath"], "mountPath").to_string())
            .unwrap_or_else(|| panic!("no mount {name}"))
    };
    assert_eq!(mount("data"), STATE);
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(
        str_of(&claim["metadata"]["name"], "claim"),
        "data",
        "a volume per replica"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));

    let cm = kind("ConfigMap").next().expect("a ConfigMap");
    let cm_name = str_of(&cm["metadata"]["name"], "ConfigMap name");
    let used = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| v["configMap"]["name"] == cm_name);
    assert!(used, "the pod mounts the ConfigMap");
    let args: Vec<&str> = strings(&container["args"]);
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    assert_eq!(
        Path::new(config_path).parent().unwrap(),
        Path::new(&mount("config"))
    );
    let config = config_from(str_of(&cm["data"]["leadscore.toml"], "leadscore.toml"));
    assert_service_config(&config, "ConfigMap leadscore.toml");
    assert_eq!(config.rules.file_name().unwrap(), "rules.toml");
    RuleSet::parse(str_of(&cm["data"]["rules.toml"], "rules.toml"))
        .unwrap_or_else(|e| panic!("ConfigMap rules.toml: {e:?}"));

    for svc in kind("Service") {
        let p = &svc["spec"]["ports"][0];
        assert_eq!(p["port"].as_u64(), Some(PORT.parse().unwrap()));
        assert_eq!(str_of(&p["targetPort"], "targetPort"), port_name);
        assert_eq!(
            svc["spec"]["selector"],
            sts["spec"]["selector"]["matchLabels"]
        );
    }
}

/// Metric names the service exports (with a histogram's series suffixes).
fn exported() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = NAMES.iter().map(|n| n.to_string()).collect();
    for line in Metrics::new().render().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            names.insert(rest.split(' ').next().unwrap().to_string());
        }
    }
    let histograms: Vec<String> = names
        .iter()
        .filter(|n| n.ends_with("_seconds"))
        .cloned()
        .collect();
    for h in histograms {
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{h}{suffix}"));
        }
    }
    names
}

/// Metric-like identifiers in a PromQL expression.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in expr.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            if word.starts_with("leadscore_") || word.starts_with("process_") {
                out.push(word.clone());
            }
            word.clear();
        }
    }
    out
}

#[test]
fn the_dashboard_uses_only_exported_metrics_and_covers_the_essentials() {
    let text = read("deploy/grafana/dashboards/leadscore.json");
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exported = exported();
    let mut used = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for m in metrics_in(expr) {
                assert!(
                    exported.contains(&m),
                    "{}: {m} is not exported",
                    panel["title"]
                );
                used.insert(m);
            }
        }
    }
    for essential in [
        "leadscore_events_consumed_total",
        "leadscore_consumer_lag_messages",
        "leadscore_tier_changes_total",
        "leadscore_processing_duration_seconds_bucket",
        "leadscore_events_rejected_total",
    ] {
        assert!(used.contains(essential), "no panel shows {essential}");
    }
    let provider = yaml("deploy/grafana/provisioning/dashboards/leadscore.yml");
    let path = str_of(
        &provider["providers"][0]["options"]["path"],
        "provider path",
    );
    let compose = read("docker-compose.yml");
    assert!(
        compose.contains(&format!("./deploy/grafana/dashboards:{path}")),
        "{path}"
    );
}

#[test]
fn the_alert_rules_use_only_exported_metrics() {
    let rules = yaml("deploy/prometheus/alerts.yml");
    let exported = exported();
    let mut alerts = BTreeSet::new();
    for rule in rules["groups"][0]["rules"].as_sequence().unwrap() {
        let name = str_of(&rule["alert"], "alert").to_string();
        for m in metrics_in(str_of(&rule["expr"], "expr")) {
            assert!(exported.contains(&m), "{name}: {m} is not exported");
        }
        alerts.insert(name);
    }
    assert_eq!(alerts.len(), 5, "{alerts:?}");
}

#[test]
#[ignore = "needs promtool (Debian package prometheus); scripts/test.sh runs it when Tansu is installed, as in CI"]
fn promtool_accepts_the_alert_rules_and_the_prometheus_config() {
    let rules = root().join("deploy/prometheus/alerts.yml");
    common::promtool_accepts(&["check", "rules", rules.to_str().unwrap()], None);
    let config = root().join("deploy/prometheus/prometheus.yml");
    common::promtool_accepts(&["check", "config", config.to_str().unwrap()], None);
}

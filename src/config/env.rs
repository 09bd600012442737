//! `LEADSCORE__SECTION__KEY` environment overrides, applied to the parsed
//! file before it is typed.

use super::{Config, ConfigError};

/// Applies `LEADSCORE__SECTION__KEY=value` overrides. A value takes the type
/// of the key's default (number, boolean or string); in `kafka.consumer` and
/// `kafka.producer` the key's underscores become dots (librdkafka names).
/// Returns the keys set, dotted, with the variable that set each.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("LEADSCORE__"))
        .collect();
    vars.sort();
    let mut set = Vec::new();
    for (var, value) in vars {
        let mut path: Vec<String> = var["LEADSCORE__".len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let passthrough = path.len() == 3
            && path[0] == "kafka"
            && (path[1] == "consumer" || path[1] == "producer");
        if passthrough {
            path[2] = path[2].replace('_', ".");
        }
        let Some((last, sections)) = path.split_last() else {
            continue;
        };
        let mut default = Some(&defaults);
        let mut target = &mut *table;
        for section in sections {
            default = default
                .and_then(|d| d.get(section))
                .and_then(toml::Value::as_table);
            let entry = target
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            target = entry.as_table_mut().ok_or_else(|| ConfigError::Invalid {
                key: var.clone(),
                message: format!("`{section}` is not a section"),
            })?;
        }
        let typed = match default.and_then(|d| d.get(last)) {
            Some(toml::Value::Integer(_)) => value.trim().parse().map(toml::Value::Integer).ok(),
            Some(toml::Value::Boolean(_)) => value.trim().parse().map(toml::Value::Boolean).ok(),
            _ => Some(toml::Value::String(value.clone())),
        };
        let typed = typed.ok_or_else(|| ConfigError::Invalid {
            key: var.clone(),
            message: format!("`{value}` has the wrong type"),
        })?;
        target.insert(last.clone(), typed);
        set.push((path.join("."), var));
    }
    Ok(set)
}

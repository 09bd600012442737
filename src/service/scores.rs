//! `leadscore scores`: the scores held in a (stopped) service's state
//! directory, in replay's `--scores-out` format, each contact evaluated at
//! its partition's clock. Lets an operator inspect state offline and lets
//! tests compare the service with `leadscore replay`.

use std::io::Write;

use anyhow::Context;

use crate::processor::stored_clock;
use crate::replay::write_score_lines;
use crate::scoring::{ContactState, Engine};
use crate::state::{keys, Family, StateStore};

const PAGE: usize = 10_000;

/// Writes one line per contact and model, sorted by contact then model.
/// Returns the number of contacts.
pub fn write_scores<S: StateStore>(
    store: &S,
    engine: &Engine,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut contacts: Vec<(String, u32)> = Vec::new();
    let mut start = Vec::new();
    loop {
        let page = store
            .scan(Family::Contacts, &start, &[0xFF; 5], PAGE)
            .context("reading contacts")?;
        let Some((last, _)) = page.last() else { break };
        start = last.clone();
        start.push(0);
        for (k, _) in &page {
            let (partition, name) = keys::parse_contact_key(k)
                .with_context(|| format!("a contact key of {} bytes", k.len()))?;
            contacts.push((name, partition));
        }
        if page.len() < PAGE {
            break;
        }
    }
    contacts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut clocks = std::collections::BTreeMap::new();
    for (_, p) in &contacts {
        if !clocks.contains_key(p) {
            clocks.insert(*p, stored_clock(store, *p)?);
        }
    }
    for (name, p) in &contacts {
        let state: ContactState = store
            .contact(*p, name)
            .with_context(|| format!("contact {name} of partition {p}"))?
            .with_context(|| format!("contact {name} of partition {p} vanished"))?;
        write_score_lines(engine, name, &state, clocks[p], out)?;
    }
    Ok(contacts.len() as u64)
}

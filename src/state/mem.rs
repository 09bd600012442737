//! `MemStateStore`: the state store in memory, for processor tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::store::{Batch, Entries, Family, StateStore, StoreError};

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// Column families as ordered maps behind one lock (so a commit is atomic).
#[derive(Debug, Default)]
pub struct MemStateStore {
    families: Mutex<BTreeMap<Family, Table>>,
}

impl MemStateStore {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<Family, Table>) -> R) -> Result<R, StoreError> {
        let mut guard = self
            .families
            .lock()
            .map_err(|_| StoreError::Backend("state lock poisoned".into()))?;
        Ok(f(&mut guard))
    }
}

impl StateStore for MemStateStore {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|f| f.get(&family).and_then(|t| t.get(key)).cloned())
    }

    fn scan(
        &self,
        family: Family,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.with(|f| match f.get(&family) {
            None => Vec::new(),
            Some(t) => t
                .range(start.to_vec()..end.to_vec())
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.with(|f| {
            for (start, end) in &batch.drop_ranges {
                for family in Family::ALL.into_iter().filter(|f| f.partitioned()) {
                    if let Some(t) = f.get_mut(&family) {
                        let doomed: Vec<Vec<u8>> = t
                            .range(start.clone()..end.clone())
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            t.remove(&k);
                        }
                    }
                }
            }
            for (family, key, value) in batch.ops {
                let t = f.entry(family).or_default();
                match value {
                    Some(v) => {
                        t.insert(key, v);
                    }
                    None => {
                        t.remove(&key);
                    }
                }
            }
        })
    }
}

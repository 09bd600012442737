//! `RocksStateStore`: state in RocksDB, one column family per kind of record,
//! a shared block cache and a write-buffer budget charged to it, so the
//! whole store stays inside `state.memory_budget`.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options,
    ReadOptions, WriteBatch, WriteBufferManager, WriteOptions, DB,
};

use super::store::{Batch, Entries, Family, StateStore, StoreError};

/// Forgetting remembered event ids: compactions drop a dedupe entry once
/// `seen at + window` is at or before `watermark` (the lowest partition
/// clock), when no partition can still match it.
#[derive(Debug, Clone)]
pub struct DedupeExpiry {
    pub window_ms: i64,
    pub watermark: Arc<AtomicI64>,
}

pub struct RocksStateStore {
    db: DB,
    cache: Cache,
}

fn backend(e: rocksdb::Error) -> StoreError {
    StoreError::Backend(e.into_string())
}

impl RocksStateStore {
    /// Opens (or creates) the store in `dir` within `memory_budget` bytes:
    /// half for the block cache, half for write buffers (charged to the cache).
    pub fn open(dir: &Path, memory_budget: u64) -> Result<RocksStateStore, StoreError> {
        Self::open_with(dir, memory_budget, None)
    }

    /// As [`open`](Self::open), with remembered event ids expiring.
    pub fn open_with(
        dir: &Path,
        memory_budget: u64,
        expiry: Option<DedupeExpiry>,
    ) -> Result<RocksStateStore, StoreError> {
        let budget = usize::try_from(memory_budget).unwrap_or(usize::MAX);
        let cache = Cache::new_lru_cache(budget / 2);
        let buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            budget / 2,
            true,
            cache.clone(),
        );
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_write_buffer_manager(&buffers);
        db_opts.set_paranoid_checks(true);
        let families = Family::ALL.iter().map(|f| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            if matches!(f, Family::Contacts | Family::Dedupe) {
                table.set_bloom_filter(10.0, false);
            }
            let mut cf = Options::default();
            cf.set_block_based_table_factory(&table);
            cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if let (Family::Dedupe, Some(e)) = (f, expiry.clone()) {
                cf.set_compaction_filter("dedupe-expiry", move |_, _, value: &[u8]| {
                    let Ok(raw) = <[u8; 8]>::try_from(value) else {
                        return Decision::Keep;
                    };
                    let seen = i64::from_be_bytes(raw);
                    if seen.saturating_add(e.window_ms) <= e.watermark.load(Ordering::Relaxed) {
                        Decision::Remove
                    } else {
                        Decision::Keep
                    }
                });
            }
            ColumnFamilyDescriptor::new(f.name(), cf)
        });
        let db = DB::open_cf_descriptors(&db_opts, dir, families).map_err(|e| {
            let message = e.into_string();
            // RocksDB's words for its lock taken, by this process or another.
            if message.contains("/LOCK: ") {
                StoreError::InUse(message)
            } else {
                StoreError::Backend(message)
            }
        })?;
        Ok(RocksStateStore { db, cache })
    }

    fn cf(&self, family: Family) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(family.name()).ok_or_else(|| {
            StoreError::Backend(format!("column family {} is missing", family.name()))
        })
    }

    /// Compacts the dedupe family now (expired ids go; compactions also run
    /// on their own as data is written).
    pub fn compact_dedupe(&self) -> Result<(), StoreError> {
        let cf = self.cf(Family::Dedupe)?;
        self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// Bytes held by the shared block cache (including write buffers charged to it).
    pub fn cache_usage(&self) -> usize {
        self.cache.get_usage()
    }

    /// RocksDB's estimate of the keys in one family (rough after many deletes).
    pub fn estimate_keys(&self, family: Family) -> u64 {
        self.cf(family)
            .ok()
            .and_then(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0)
    }

    /// RocksDB's estimate of live data, summed over families.
    pub fn live_data_size(&self) -> u64 {
        Family::ALL
            .iter()
            .filter_map(|f| self.cf(*f).ok())
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.estimate-live-data-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }
}

impl StateStore for RocksStateStore {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(family)?, key).map_err(backend)
    }

    fn scan(
        &self,
        family: Family,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(end.to_vec());
        let iter = self.db.iterator_cf_opt(
            self.cf(family)?,
            opts,
            IteratorMode::From(start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(backend)?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for (start, end) in &batch.drop_ranges {
            for family in Family::ALL.into_iter().filter(|f| f.partitioned()) {
                wb.delete_range_cf(self.cf(family)?, start, end);
            }
        }
        for (family, key, value) in &batch.ops {
            let cf = self.cf(*family)?;
            match value {
                Some(v) => wb.put_cf(cf, key, v),
                None => wb.delete_cf(cf, key),
            }
        }
        // WAL on, no fsync per batch: a killed process loses nothing; an
        // operating-system crash may lose the last batches, which are then
        // consumed again from the offsets committed with them.
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db.write_opt(wb, &opts).map_err(backend)
    }
}

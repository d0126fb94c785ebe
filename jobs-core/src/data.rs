//! The dataset: JSON records held in Redis, loaded in bulk, listed, searched
//! and cleared. Jobs can analyse it; the API serves it over REST and gRPC.
//!
//! # Keys
//!
//! Under the same prefix as the jobs (`JOBS_KEY_PREFIX`, default `jobs`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:data:records` | hash | record id → the record as compact JSON: an object that holds its own `id` |
//! | `{prefix}:data:order` | sorted set | every record id, scored by its load sequence: the list, in load order |
//! | `{prefix}:data:seq` | string | the load counter; each load reserves one number per record |
//!
//! # Loads
//!
//! A load is checked whole before anything is written ([`NewRecords::parse`]):
//! one bad record rejects it, naming the record's index. It is then written as
//! one MULTI/EXEC transaction of pipelined batches (one `HSET` and one `ZADD`
//! per [`LOAD_BATCH`] records), so it costs one round trip and Redis applies
//! all of it or, if the connection fails before `EXEC`, none of it. A record
//! whose id is already stored replaces it and moves to the end of the order.
//! A load may take longer than a single command: the timeout
//! (`JOBS_REDIS_TIMEOUT_MS`) plus a second per MiB of records.
//!
//! A clear is one script (`clear_data.lua`), not a transaction, so that it
//! can still free memory when Redis is out of it.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use serde_json::Value;

use crate::{
    Error, RedisConfig, Result, ValidationError, integer_text, scripts, store::LazyConnection,
};

/// A record: a JSON object with an `id` field.
pub type Record = serde_json::Map<String, Value>;

/// Records per `HSET`/`ZADD` command in a load.
pub const LOAD_BATCH: usize = 1000;
/// The most records one load takes.
pub const MAX_LOAD_RECORDS: usize = 1_000_000;
/// The longest record id, in characters.
pub const MAX_RECORD_ID_CHARS: usize = 256;

/// Records read per round trip while a search scans the dataset.
const SEARCH_BATCH: usize = 1000;
/// How much longer than a single command a load may take, per MiB of its
/// records: it is one transaction, which must cross the network and which
/// Redis runs whole. A MiB a second is far below what either does, even
/// over a slow link, yet a stalled Redis fails a small load in little more
/// than the timeout.
const BULK_TIME_PER_MIB: Duration = Duration::from_secs(1);
/// A limit on the bulk connection's calls that is never reached: each has a
/// deadline of its own, set by its size ([`Dataset::load`]).
const BULK_BACKSTOP: Duration = Duration::from_secs(24 * 3600);

/// A record's id: its `id` field (a string, or a whole number, as its
/// canonical decimal text: `7.0` is `7`), or a random UUID when it has none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(String);

impl RecordId {
    /// Parses a client-supplied id: 1 to [`MAX_RECORD_ID_CHARS`] characters, no
    /// control characters. The error names the field `id`.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        Self::parse_at(text, "id")
    }

    fn parse_at(text: &str, field: &str) -> Result<Self, ValidationError> {
        if text.is_empty() || text.chars().count() > MAX_RECORD_ID_CHARS {
            return Err(ValidationError::new(
                field,
                format!("a record id takes 1 to {MAX_RECORD_ID_CHARS} characters"),
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(ValidationError::new(
                field,
                "a record id must not hold control characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A load that passed every check: records with their ids, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecords {
    /// Each record's id and its compact JSON, in load order.
    records: Vec<(RecordId, String)>,
    /// What the records take, ids and JSON: what the load sends to Redis.
    bytes: usize,
}

impl NewRecords {
    /// Checks a load: every item a JSON object whose `id`, if any, is a
    /// string or a whole number, no id twice, at most [`MAX_LOAD_RECORDS`].
    /// Records without an id get a random one, written into the record; a
    /// number is written back as its canonical integer (`1e3` is `1000`),
    /// so the stored record holds the id it is found by.
    /// The error names the record by its index (`records[7].id`).
    pub fn parse(values: Vec<Value>) -> Result<Self, ValidationError> {
        if values.len() > MAX_LOAD_RECORDS {
            return Err(ValidationError::new(
                "records",
                format!(
                    "{} records in one load; at most {MAX_LOAD_RECORDS} are accepted",
                    values.len()
                ),
            ));
        }
        let mut seen: HashMap<RecordId, usize> = HashMap::with_capacity(values.len());
        let mut records = Vec::with_capacity(values.len());
        let mut bytes = 0usize;
        for (index, value) in values.into_iter().enumerate() {
            let Value::Object(mut record) = value else {
                return Err(ValidationError::new(
                    format!("records[{index}]"),
                    format!("must be a JSON object, not {}", json_type_name(&value)),
                ));
            };
            let field = format!("records[{index}].id");
            let id = match record.get("id") {
                None => {
                    let id = RecordId::new_random();
                    record.insert("id".into(), Value::String(id.0.clone()));
                    id
                }
                Some(Value::String(text)) => RecordId::parse_at(text, &field)?,
                Some(Value::Number(number)) => match integer_text(number) {
                    Some(text) => {
                        let id = RecordId::parse_at(&text, &field)?;
                        if number.as_str() != text {
                            let canonical = text.parse().map_err(|_| {
                                ValidationError::new(&field, "must be a string or a whole number")
                            })?;
                            record.insert("id".into(), Value::Number(canonical));
                        }
                        id
                    }
                    None => {
                        return Err(ValidationError::new(
                            field,
                            format!("must be a string or a whole number, not {number}"),
                        ));
                    }
                },
                Some(other) => {
                    return Err(ValidationError::new(
                        field,
                        format!(
                            "must be a string or a whole number, not {}",
                            json_type_name(other)
                        ),
                    ));
                }
            };
            if let Some(first) = seen.insert(id.clone(), index) {
                return Err(ValidationError::new(
                    field,
                    format!("id {:?} is already used by records[{first}]", id.0),
                ));
            }
            let json = Value::Object(record).to_string();
            bytes = bytes.saturating_add(id.0.len() + json.len());
            records.push((id, json));
        }
        Ok(Self { records, bytes })
    }

    /// How many records the load holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True for a load of no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records' ids, in load order.
    pub fn ids(&self) -> impl Iterator<Item = &RecordId> {
        self.records.iter().map(|(id, _)| id)
    }
}

/// A JSON value's type, as error messages name it ("a number", "an array").
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Which page of records to list, and what to search for. Built by
/// [`DataQuery::new`], which checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataQuery {
    page_size: usize,
    after_seq: Option<u64>,
    /// The search text, lowercased; `None` lists every record.
    search: Option<String>,
}

impl DataQuery {
    /// `page_size` 0 means [`crate::DEFAULT_PAGE_SIZE`]; above
    /// [`crate::MAX_PAGE_SIZE`] it is cut to that. `page_token` is empty for
    /// the first page, otherwise a token from [`DataPage::next_page_token`].
    /// A non-empty `search` keeps only records with a string value (at any
    /// depth) that contains it, ignoring case.
    pub fn new(page_size: i64, page_token: &str, search: &str) -> Result<Self, ValidationError> {
        let (page_size, after_seq) = crate::store::parse_page(page_size, page_token)?;
        let search = (!search.is_empty()).then(|| search.to_lowercase());
        Ok(Self {
            page_size,
            after_seq,
            search,
        })
    }

    /// The most records the page holds.
    pub fn page_size(&self) -> usize {
        self.page_size
    }
}

/// One page of records, in load order.
#[derive(Debug, Clone)]
pub struct DataPage {
    /// The records.
    pub records: Vec<Record>,
    /// The token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The key names of the dataset.
#[derive(Debug, Clone)]
struct DataKeys {
    records: String,
    order: String,
    seq: String,
}

/// The dataset in Redis. Cheap to clone: clones share its connections.
#[derive(Debug, Clone)]
pub struct Dataset {
    conn: Arc<LazyConnection>,
    /// For loads, whose calls set their own deadlines: a long transaction
    /// here holds up no other call.
    bulk: Arc<LazyConnection>,
    /// How long a single command may take.
    timeout: Duration,
    keys: DataKeys,
}

impl Dataset {
    /// The dataset in the Redis of `config`. Its connections open on first
    /// use (the store's connection is the one that reports, at start, a
    /// Redis that is down or too old), so only a bad configuration fails
    /// here; until Redis answers, calls fail with [`Error::Unavailable`].
    pub fn new(config: &RedisConfig) -> Result<Self> {
        let client = config.client()?;
        let timeout = config.timeout();
        let conn = LazyConnection::new(client.clone(), timeout, timeout);
        let bulk = LazyConnection::new(client, timeout, BULK_BACKSTOP);
        let prefix = &config.key_prefix;
        Ok(Self {
            conn: Arc::new(conn),
            bulk: Arc::new(bulk),
            timeout,
            keys: DataKeys {
                records: format!("{prefix}:data:records"),
                order: format!("{prefix}:data:order"),
                seq: format!("{prefix}:data:seq"),
            },
        })
    }

    /// Checks that Redis answers on both of the dataset's connections. A
    /// connection that dropped (Redis restarted) fails its next command and
    /// reconnects after it: pinging each regularly spends that failure on
    /// the ping, not on a client's call.
    pub async fn ping(&self) -> Result<()> {
        async fn ping(connection: &LazyConnection, timeout: Duration) -> Result<()> {
            let mut conn = connection.get().await?;
            let ping = redis::cmd("PING");
            Ok(within(timeout, ping.query_async::<()>(&mut conn)).await?)
        }
        // Both, whatever the first says: each has its own connection to mend.
        let (conn, bulk) = tokio::join!(
            ping(&self.conn, self.timeout),
            ping(&self.bulk, self.timeout)
        );
        conn.and(bulk)
    }

    /// Stores every record of `load` in one transaction and returns their
    /// ids, in load order.
    pub async fn load(&self, load: &NewRecords) -> Result<Vec<RecordId>> {
        let count = load.len();
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.bulk.get().await?;
        // Reserving sequence numbers first is harmless if the write then
        // fails: the order only needs them increasing, not dense.
        let mut reserve = redis::cmd("INCRBY");
        reserve.arg(&self.keys.seq).arg(count);
        let last: u64 = within(self.timeout, reserve.query_async(&mut conn)).await?;
        let first = last + 1 - count as u64;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (batch_index, batch) in load.records.chunks(LOAD_BATCH).enumerate() {
            let base = first + (batch_index * LOAD_BATCH) as u64;
            let hset = pipe.cmd("HSET").arg(&self.keys.records);
            for (id, json) in batch {
                hset.arg(id.as_str()).arg(json.as_str());
            }
            hset.ignore();
            let zadd = pipe.cmd("ZADD").arg(&self.keys.order);
            for (offset, (id, _)) in batch.iter().enumerate() {
                zadd.arg(base + offset as u64).arg(id.as_str());
            }
            zadd.ignore();
        }
        let mib = load.bytes as f64 / (1024.0 * 1024.0);
        let deadline = self.timeout + BULK_TIME_PER_MIB.mul_f64(mib);
        within(deadline, pipe.query_async::<()>(&mut conn))
            .await
            .map_err(|err| Error::from(err).of_write())?;
        tracing::debug!(count, "dataset records loaded");
        Ok(load.ids().cloned().collect())
    }

    /// The record with id `id`.
    pub async fn get(&self, id: &RecordId) -> Result<Record> {
        let mut conn = self.conn.get().await?;
        let json: Option<String> = redis::cmd("HGET")
            .arg(&self.keys.records)
            .arg(id.as_str())
            .query_async(&mut conn)
            .await?;
        match json {
            Some(json) => parse_record(id.as_str(), &json),
            None => Err(Error::RecordNotFound(id.clone())),
        }
    }

    /// One page of records, in load order; with a search, only the records
    /// that match it.
    pub async fn list(&self, query: &DataQuery) -> Result<DataPage> {
        let batch_size = match query.search {
            Some(_) => SEARCH_BATCH,
            None => query.page_size,
        };
        let mut after = query.after_seq;
        let mut records = Vec::new();
        loop {
            // One more than needed tells whether anything follows.
            let batch = self.read_batch(after, batch_size + 1).await?;
            let more = batch.len() > batch_size;
            let batch = &batch[..batch.len().min(batch_size)];
            for (position, (seq, record)) in batch.iter().enumerate() {
                let Some(record) = record else { continue };
                if let Some(needle) = &query.search
                    && !record.values().any(|value| contains_text(value, needle))
                {
                    continue;
                }
                records.push(record.clone());
                if records.len() == query.page_size {
                    let rest = more || position + 1 < batch.len();
                    return Ok(DataPage {
                        records,
                        next_page_token: rest.then(|| seq.to_string()),
                    });
                }
            }
            match batch.last() {
                Some((seq, _)) if more => after = Some(*seq),
                _ => {
                    return Ok(DataPage {
                        records,
                        next_page_token: None,
                    });
                }
            }
        }
    }

    /// Up to `count` records after sequence `after`, with their sequence
    /// numbers; `None` for a record removed between the two reads.
    async fn read_batch(
        &self,
        after: Option<u64>,
        count: usize,
    ) -> Result<Vec<(u64, Option<Record>)>> {
        let min = after.map_or_else(|| "-inf".to_owned(), |seq| format!("({seq}"));
        let mut conn = self.conn.get().await?;
        let ids: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&self.keys.order)
            .arg(min)
            .arg("+inf")
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(&self.keys.records);
        for (id, _) in &ids {
            hmget.arg(id);
        }
        let jsons: Vec<Option<String>> = hmget.query_async(&mut conn).await?;
        ids.into_iter()
            .zip(jsons)
            .map(|((id, score), json)| {
                // Scores are whole numbers far below 2^53, so exact.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let seq = score as u64;
                let record = json.map(|json| parse_record(&id, &json)).transpose()?;
                Ok((seq, record))
            })
            .collect()
    }

    /// Removes every record; returns how many there were. It works while
    /// Redis is out of memory, and frees memory then. A single command's
    /// work (`UNLINK` frees large values in the background), so it has a
    /// single command's timeout.
    pub async fn clear(&self) -> Result<u64> {
        let mut conn = self.conn.get().await?;
        let count: u64 = scripts::CLEAR_DATA
            .key(&self.keys.records)
            .key(&self.keys.order)
            .invoke_async(&mut conn)
            .await
            .map_err(|err| Error::from(err).of_write())?;
        tracing::debug!(count, "dataset cleared");
        Ok(count)
    }
}

/// `call`'s answer, or a timeout error after `limit`, as the connection's own
/// response timeout would give: for the bulk connection, whose calls each
/// have a deadline of their own.
async fn within<T>(
    limit: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Redis did not answer in time",
        )))
    })
}

fn parse_record(id: &str, json: &str) -> Result<Record> {
    serde_json::from_str(json)
        .map_err(|err| Error::Corrupt(format!("dataset record {id:?}: {err}")))
}

/// True when `value` is, or holds at any depth, a string containing
/// `needle` (already lowercased), ignoring case.
fn contains_text(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(text) => text.to_lowercase().contains(needle),
        Value::Array(items) => items.iter().any(|item| contains_text(item, needle)),
        Value::Object(map) => map.values().any(|item| contains_text(item, needle)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<NewRecords, ValidationError> {
        let Value::Array(items) = value else {
            panic!("an array")
        };
        NewRecords::parse(items)
    }

    #[test]
    fn ids_come_from_the_record_or_are_generated_into_it() {
        let load = parse(json!([{"id": "a"}, {"id": 7}, {"name": "x"}, {"id": 8.0}])).unwrap();
        let ids: Vec<_> = load.ids().map(RecordId::as_str).collect();
        assert_eq!(&ids[..2], ["a", "7"]);
        assert_eq!(ids[2].len(), 36);
        assert_eq!(ids[3], "8");
        let stored: Value = serde_json::from_str(&load.records[2].1).unwrap();
        assert_eq!(stored["id"], ids[2]);
    }

    #[test]
    fn a_bad_record_is_named_by_its_index() {
        let err = parse(json!([{"id": "a"}, 5])).unwrap_err();
        assert_eq!(err.field(), "records[1]");
        let err = parse(json!([{"id": "a"}, {"id": 1.5}])).unwrap_err();
        assert_eq!(err.field(), "records[1].id");
        let err = parse(json!([{"id": "a"}, {"id": "b"}, {"id": "a"}])).unwrap_err();
        assert_eq!(err.field(), "records[2].id");
        assert!(err.message().contains("records[0]"), "{err}");
        let err = parse(json!([{"id": ""}])).unwrap_err();
        assert_eq!(err.field(), "records[0].id");
    }

    #[test]
    fn search_matches_strings_at_any_depth_ignoring_case() {
        let record = json!({"id": 1, "name": "Ada Lovelace", "tags": ["Math"], "n": 42});
        assert!(contains_text(&record, "lovelace"));
        assert!(contains_text(&record, "math"));
        assert!(!contains_text(&record, "42"));
    }

    #[test]
    fn queries_check_their_token() {
        assert_eq!(DataQuery::new(0, "", "").unwrap().page_size(), 100);
        assert_eq!(
            DataQuery::new(10, "x", "").unwrap_err().field(),
            "page_token"
        );
        assert_eq!(DataQuery::new(-1, "", "").unwrap_err().field(), "page_size");
    }
}

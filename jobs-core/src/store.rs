//! The client side of Redis: create, read, list, cancel and watch jobs.
//!
//! # Keys
//!
//! Every key lives under one prefix (`JOBS_KEY_PREFIX`, default `jobs`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:job:{jid}` | hash | the job (a field at its zero value may be absent: `attempts`, `lease`, `progress`; a SUCCESS job's `outcome` and `progress` go unwritten, as they follow from its status): `jid`, `status`, `spec` (what the job was created with and never changes, joined by NUL: `start`, `end`, `kind`, `params` (JSON object; empty when none), `create_time` (µs since the Unix epoch, Redis's clock), `max_attempts`, `timeout_ms`, `traceparent` (the submitting call's W3C trace context; empty when it sent none); one field instead of eight keeps every read and write of the hash cheaper; hashes written by earlier releases hold these as fields of their own, and are read as well), `start_time`, `end_time` (µs, as `create_time`; absent until known), `attempts`, `error` (the latest), `progress` (0..1), `history` (JSON array, one object per attempt after which the job was queued again; absent until one), `outcome` (how the attempt that ended the job ended: with `attempts`, `worker`, `start_time`, `end_time` and `error` it is the history's last entry, kept out of the JSON so that the common path writes none), `version` (bumped by every change), `seq` (creation order), `lease` (fencing token, bumped by every take), `lease_until` (ms; meaningful while RUNNING), `worker` (consumer that holds, or last held, it), `cancel` (`1` once cancellation of a running job was requested). Once finished, deleted by a worker's recovery pass after the retention (it has no TTL: see `{prefix}:retention`) |
//! | `{prefix}:result:{jid}` | string | the result of a successful job, as JSON; expires after the result TTL, or is deleted with its job if that comes first. A result of at most 64 bytes, when the result TTL is at least the retention, is the job hash's `result` field instead |
//! | `{prefix}:delayed` | sorted set | jids waiting out a retry backoff, scored by due time (ms); claims move due ones to the queue |
//! | `{prefix}:retention` | sorted set | finished jobs scored by when their retention ends (ms); each member is the space-separated jids of the jobs one call finished. Recovery (`recover.lua`, twice per lease in every worker) deletes the due jobs' hashes and their index entries in one step: one schedule entry per batch costs Redis less than a TTL on every hash, and no index outlives its job. (`{prefix}:expiry`, the schedule of earlier releases, whose jobs carried TTLs, is drained the same way; it keeps its name so that workers of those releases, which pop it too, never see a job without a TTL) |
//! | `{prefix}:idem:{key}` | hash | an idempotency key: `jid` and `fingerprint` (SHA-1 of the submission); expires after the idempotency window |
//! | `{prefix}:queue` | stream | one entry per queued job, field `jid`, read by consumer group `workers`; an entry is acknowledged when its job finishes, and acknowledged entries are trimmed from the head of the stream (by a worker's finish every ~100 entries it acknowledged, and by recovery) |
//! | `{prefix}:seq` | string | the creation counter that gives each job its `seq` |
//! | `{prefix}:status:{STATUS}` | sorted set | the jids with that status, scored by `seq`. A job is in one status at a time, so the unfiltered list merges them (`list.lua`); there is no index of every job. RUNNING has none either: the queue's pending entries name the running jobs. (`{prefix}:index` and `{prefix}:status:RUNNING`, kept by earlier releases, are emptied by recovery as their jobs expire) |
//! | `{prefix}:events:{jid}` | pub/sub channel | the job hash after each change, as a JSON array `[field, value, ...]`; claims and finishes publish only while `{prefix}:watching` exists |
//! | `{prefix}:watching` | string | present while an API process has WatchJob subscribers (it sets it before subscribing, with a 60 s TTL it refreshes every 20 s) |
//! | `{prefix}:cancel` | pub/sub channel | jids of running jobs whose cancellation was requested, for their workers |
//!
//! Every state change is one Lua script (`scripts/`), so it is atomic and
//! guarded: a finished job never goes back to RUNNING or QUEUED.

use std::{sync::Arc, time::Duration};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};

use crate::{
    Error, Job, JobDefaults, JobId, JobStatus, NewJob, RedisConfig, Result, Retention, Timestamp,
    ValidationError, record, scripts, watch::WatchHub,
};

/// The consumer group every worker reads the queue through.
pub(crate) const GROUP: &str = "workers";

/// How long a watch waits for an event before it reads the job again.
const WATCH_RECHECK: Duration = Duration::from_secs(10);

/// Page size when a list request gives none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page a list request gets; larger requests are cut to it.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most job data a page of jobs holds, as stored (each job's hash:
/// field names and values; its params, history and errors are most of a
/// large one). A page ends before the job that would take it past this
/// (a job larger than it makes a page of its own), so that a response stays
/// under gRPC's common 4 MiB message limit even in the worst case: params
/// grow at most 5.5 times as a `google.protobuf.Struct` (an array of small
/// numbers), under 3 MiB for a page of them; the rest hardly grows.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;

/// The error stored on a job cancelled at a client's request, whether it
/// was queued (here) or running (by its worker; `common.lua` has a copy for
/// the scripts that end such a job).
pub const CANCEL_REASON: &str = "cancelled by request";

/// The names of every key, derived from the prefix. Those every create
/// names are formatted once, not at each call.
#[derive(Debug)]
pub(crate) struct Keys {
    prefix: String,
    queue: String,
    seq: String,
    /// The status indexes, in the order of [`JobStatus::ALL`].
    statuses: [String; JobStatus::ALL.len()],
    /// What a create names as the idempotency record of a job without a key
    /// (create.lua ignores it).
    no_idempotency: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            queue: format!("{prefix}:queue"),
            seq: format!("{prefix}:seq"),
            statuses: JobStatus::ALL.map(|status| format!("{prefix}:status:{status}")),
            no_idempotency: format!("{prefix}:idem:"),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn job(&self, jid: &JobId) -> String {
        format!("{}:job:{jid}", self.prefix)
    }

    pub(crate) fn result(&self, jid: &JobId) -> String {
        format!("{}:result:{jid}", self.prefix)
    }

    pub(crate) fn events(&self, jid: &JobId) -> String {
        format!("{}:events:{jid}", self.prefix)
    }

    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    pub(crate) fn seq(&self) -> &str {
        &self.seq
    }

    pub(crate) fn index(&self) -> String {
        format!("{}:index", self.prefix)
    }

    pub(crate) fn status(&self, status: JobStatus) -> &str {
        let index = JobStatus::ALL
            .iter()
            .position(|each| *each == status)
            .expect("JobStatus::ALL holds every status");
        &self.statuses[index]
    }

    pub(crate) fn watching(&self) -> String {
        format!("{}:watching", self.prefix)
    }

    pub(crate) fn cancel_channel(&self) -> String {
        format!("{}:cancel", self.prefix)
    }

    pub(crate) fn delayed(&self) -> String {
        format!("{}:delayed", self.prefix)
    }

    pub(crate) fn retention(&self) -> String {
        format!("{}:retention", self.prefix)
    }

    /// The retention schedule of earlier releases, whose jobs had TTLs
    /// (their workers' recovery pops it, and would leave a job without one
    /// in place forever: hence a key of its own for the jobs recovery
    /// deletes).
    pub(crate) fn earlier_expiry(&self) -> String {
        format!("{}:expiry", self.prefix)
    }

    fn idempotency(&self, key: &str) -> std::borrow::Cow<'_, str> {
        if key.is_empty() {
            std::borrow::Cow::Borrowed(&self.no_idempotency)
        } else {
            std::borrow::Cow::Owned(format!("{}:idem:{key}", self.prefix))
        }
    }
}

/// Opens a self-reconnecting, multiplexed connection to a supported Redis,
/// whose connecting fails after `timeout` and whose commands fail after
/// `response_timeout`, with [`Error::Unavailable`], instead of hanging.
pub(crate) async fn connect_manager(
    client: &redis::Client,
    timeout: Duration,
    response_timeout: Duration,
) -> Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let mut manager = client.get_connection_manager_with_config(config).await?;
    check_server_version(&mut manager, MIN_REDIS_VERSION).await?;
    Ok(manager)
}

/// The oldest Redis (major, minor) the scripts are tested against. Their
/// commands alone would need 6.2 (`XAUTOCLAIM`, `XTRIM MINID`), which no
/// test here runs on.
pub(crate) const MIN_REDIS_VERSION: (u32, u32) = (7, 0);

/// Refuses a Redis older than `minimum` when a connection is opened. An
/// older server would accept jobs that its workers' scripts then fail to
/// run; refusing it at connect names the cause once, clearly. A server that
/// does not say (an `INFO` denied by its ACL) is taken on trust.
async fn check_server_version(conn: &mut ConnectionManager, minimum: (u32, u32)) -> Result<()> {
    let info = match redis::cmd("INFO")
        .arg("server")
        .query_async::<String>(conn)
        .await
    {
        Ok(info) => info,
        Err(err) => {
            let err = Error::from(err);
            if err.is_unavailable() {
                return Err(err);
            }
            tracing::debug!(%err, "Redis did not say its version; not checked");
            return Ok(());
        }
    };
    match redis_version(&info) {
        Some((found, major_minor)) if major_minor < minimum => Err(Error::UnsupportedRedis {
            found: found.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The `redis_version` line of an `INFO` reply: as written, and its major
/// and minor numbers.
fn redis_version(info: &str) -> Option<(&str, (u32, u32))> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))?
        .trim();
    let mut parts = version.split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next().and_then(Result::ok).unwrap_or(0);
    Some((version, (major, minor)))
}

/// A connection opened on first use, so that a Redis that is down when the
/// process starts delays nothing but the calls that need it.
#[derive(Debug)]
pub(crate) struct LazyConnection {
    client: redis::Client,
    timeout: Duration,
    response_timeout: Duration,
    manager: tokio::sync::OnceCell<ConnectionManager>,
}

impl LazyConnection {
    /// A connection to the Redis of `client`, opened by the first call that
    /// needs it.
    pub(crate) fn new(
        client: redis::Client,
        timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        Self {
            client,
            timeout,
            response_timeout,
            manager: tokio::sync::OnceCell::new(),
        }
    }

    /// The same, tried at once: only a Redis too old to use fails here (no
    /// call could succeed, so it is better not to start); one that does not
    /// answer yet is logged, and each call tries again.
    pub(crate) async fn open(client: redis::Client, url: &str, timeout: Duration) -> Result<Self> {
        let conn = Self::new(client, timeout, timeout);
        match conn.get().await {
            Ok(_) => {}
            Err(err @ Error::UnsupportedRedis { .. }) => return Err(err),
            Err(err) => {
                tracing::warn!(%err, url, "Redis is not reachable yet; calls fail as unavailable until it is");
            }
        }
        Ok(conn)
    }

    pub(crate) async fn get(&self) -> Result<ConnectionManager> {
        if let Some(manager) = self.manager.get() {
            return Ok(manager.clone());
        }
        // A hung Redis must not hold the caller longer than one timeout.
        let connect = self
            .manager
            .get_or_try_init(|| connect_manager(&self.client, self.timeout, self.response_timeout));
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(manager) => manager.cloned(),
            Err(_) => Err(Error::Unavailable(redis::RedisError::from(
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting to Redis timed out",
                ),
            ))),
        }
    }
}

/// The client side of the job store. Cheap to clone: clones share one
/// multiplexed connection and one pub/sub subscription.
#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<LazyConnection>,
    keys: Arc<Keys>,
    hub: Arc<WatchHub>,
    defaults: Arc<JobDefaults>,
    retention: Retention,
    group: Arc<CreateGroup>,
}

/// Single creates waiting to share a script call (group commit): while
/// [`MAX_GROUPS_IN_FLIGHT`] calls are in flight, new creates wait here and
/// the next call takes them all. An idle store sends each create at once;
/// a busy one sends fewer, larger calls, which cost Redis much less per job.
#[derive(Debug, Default)]
struct CreateGroup {
    state: std::sync::Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    waiting: Vec<(NewJob, tokio::sync::oneshot::Sender<Result<Created>>)>,
    in_flight: usize,
}

impl CreateGroup {
    fn state(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How many grouped create calls may be in flight at once.
const MAX_GROUPS_IN_FLIGHT: usize = 4;

/// A job just accepted.
#[derive(Debug, Clone)]
pub struct Created {
    /// The job.
    pub job: Job,
    /// True when an earlier submission with the same idempotency key created
    /// it, and this one created nothing.
    pub replayed: bool,
}

/// The most jobs one [`Store::create_many`] call (`CreateJobs`, an array
/// posted to `/jobs`) takes: enough to amortise the round trip, small enough
/// that one script call holds Redis for only milliseconds.
pub const MAX_BATCH_JOBS: usize = 1000;

/// Checks the size of a batch of submissions: 1 to [`MAX_BATCH_JOBS`] jobs.
/// The error's field is `jobs`.
pub fn check_batch_size(len: usize) -> Result<(), ValidationError> {
    if (1..=MAX_BATCH_JOBS).contains(&len) {
        Ok(())
    } else {
        Err(ValidationError::new(
            "jobs",
            format!("a batch holds 1 to {MAX_BATCH_JOBS} jobs (got {len})"),
        ))
    }
}

/// What `create.lua` did with a batch.
#[derive(Debug)]
enum Saved {
    /// Every job, created or replayed, in order.
    Jobs(Vec<Created>),
    /// The idempotency key of the job at this index (or, `None`, the
    /// batch's own key) was used for a different submission; nothing was
    /// written.
    KeyReused(Option<usize>),
}

/// A part of `create.lua`'s reply, as `T`.
fn create_reply<T: redis::FromRedisValue>(part: Option<redis::Value>) -> Result<T> {
    let part = part.ok_or_else(|| odd_create_reply("too short"))?;
    redis::from_redis_value(part).map_err(|err| odd_create_reply(&err.to_string()))
}

fn odd_create_reply(what: &str) -> Error {
    Error::Corrupt(format!("create.lua replied oddly: {what}"))
}

fn key_reused(field: &str) -> Error {
    ValidationError::new(
        field,
        "already used for a different job within the idempotency window",
    )
    .into()
}

/// A submission with what the store decided for it, before it is saved.
#[derive(Debug)]
struct Prepared {
    jid: JobId,
    /// The params as stored: a JSON object, or empty for none.
    params: String,
    max_attempts: u32,
    timeout_ms: u64,
}

impl Prepared {
    /// The job as `create.lua` saved it, created at `create_time` as the
    /// `seq`th job.
    fn created(self, new: &NewJob, create_time: Timestamp, seq: u64) -> Job {
        Job {
            jid: self.jid,
            status: JobStatus::Queued,
            start: new.start(),
            end: new.end(),
            kind: new.kind().to_owned(),
            params: new.params().clone(),
            create_time,
            start_time: None,
            end_time: None,
            attempts: 0,
            error: None,
            progress: 0.0,
            max_attempts: self.max_attempts,
            timeout: Duration::from_millis(self.timeout_ms),
            history: Vec::new(),
            version: 1,
            seq,
            lease: 0,
            trace_parent: new.trace_parent().cloned(),
        }
    }
}

/// Which page of jobs to list. Built by [`ListQuery::new`], which checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    page_size: usize,
    after_seq: Option<u64>,
    status: Option<JobStatus>,
}

impl ListQuery {
    /// `page_size` 0 means [`DEFAULT_PAGE_SIZE`]; above [`MAX_PAGE_SIZE`] it
    /// is cut to that. `page_token` is empty for the first page, otherwise a
    /// token from [`JobPage::next_page_token`].
    pub fn new(
        page_size: i64,
        page_token: &str,
        status: Option<JobStatus>,
    ) -> Result<Self, ValidationError> {
        let (page_size, after_seq) = parse_page(page_size, page_token)?;
        Ok(Self {
            page_size,
            after_seq,
            status,
        })
    }

    /// The most jobs the page holds.
    pub fn page_size(&self) -> usize {
        self.page_size
    }
}

/// Checks a page request, as every list (jobs, records) takes it: a size
/// (0 for [`DEFAULT_PAGE_SIZE`], cut to [`MAX_PAGE_SIZE`]) and a token (empty
/// for the first page, else the creation sequence the previous page ended
/// at).
pub(crate) fn parse_page(
    page_size: i64,
    page_token: &str,
) -> Result<(usize, Option<u64>), ValidationError> {
    let page_size = match usize::try_from(page_size) {
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(size) => size.min(MAX_PAGE_SIZE),
        Err(_) => {
            return Err(ValidationError::new(
                "page_size",
                format!("must not be negative (got {page_size})"),
            ));
        }
    };
    let after_seq = if page_token.is_empty() {
        None
    } else {
        Some(page_token.parse().map_err(|_| {
            ValidationError::new(
                "page_token",
                format!("{page_token:?} is not a page token this server issued"),
            )
        })?)
    };
    Ok((page_size, after_seq))
}

/// One page of jobs, newest first.
#[derive(Debug, Clone)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// The token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The outcome of a finished job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// The job's id.
    pub jid: JobId,
    /// Its terminal status.
    pub status: JobStatus,
    /// What its handler returned, when it succeeded.
    pub result: Option<serde_json::Value>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
}

/// How much work waits in the queue, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Jobs queued that no worker has taken yet.
    pub waiting: u64,
    /// Jobs a worker has taken and not yet finished.
    pub running: u64,
    /// Jobs waiting out a retry backoff before they are queued again.
    pub delayed: u64,
    /// How long the oldest waiting job has waited since it was queued (or
    /// queued again, for a retry); `None` when none waits.
    pub oldest_waiting: Option<Duration>,
}

impl Store {
    /// Connects to the Redis of `config`.
    ///
    /// Only a bad configuration fails here, or a Redis older than the
    /// scripts need ([`Error::UnsupportedRedis`]): an unreachable Redis
    /// makes each call fail with [`Error::Unavailable`] until it is back, so
    /// the server can start (and answer) before Redis does.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let client = config.client()?;
        let conn =
            Arc::new(LazyConnection::open(client.clone(), &config.url(), config.timeout()).await?);
        let keys = Arc::new(Keys::new(&config.key_prefix));
        Ok(Self {
            hub: Arc::new(WatchHub::new(client, keys.watching(), conn.clone())),
            conn,
            keys,
            defaults: Arc::new(JobDefaults::default()),
            retention: Retention::default(),
            group: Arc::default(),
        })
    }

    /// Uses these defaults for jobs that do not set their own.
    pub fn with_defaults(mut self, defaults: JobDefaults) -> Self {
        self.defaults = Arc::new(defaults);
        self
    }

    /// Keeps cancelled jobs for this long.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.get().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Saves a new job and queues it, in one atomic step, and returns it.
    /// With an idempotency key already used for the same submission within
    /// the window, returns the job first created instead, and creates
    /// nothing; used for another submission, it is refused.
    ///
    /// Creates made at the same time may share one script call (each job
    /// still gets its own answer); the call runs to its end even if the
    /// caller stops waiting, so a job is never half-accepted.
    pub async fn create(&self, new: &NewJob) -> Result<Created> {
        // A key can refuse its job, which must not refuse the rest of a
        // group: such creates go alone.
        if new.idempotency_key().is_some() {
            return self.create_alone(new).await;
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        let group = {
            let mut state = self.group.state();
            state.waiting.push((new.clone(), answer));
            if state.in_flight < MAX_GROUPS_IN_FLIGHT {
                state.in_flight += 1;
                Some(std::mem::take(&mut state.waiting))
            } else {
                None
            }
        };
        if let Some(group) = group {
            tokio::spawn(self.clone().create_groups(group));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(Error::Corrupt("a grouped create was lost".into())))
    }

    async fn create_alone(&self, new: &NewJob) -> Result<Created> {
        match self.save(std::slice::from_ref(new), None).await? {
            Saved::Jobs(mut created) => created.pop().ok_or_else(|| odd_create_reply("no job")),
            Saved::KeyReused(_) => Err(key_reused("idempotency_key")),
        }
    }

    /// Saves `group` in one call and answers each create, then whatever
    /// waited meanwhile, until nothing waits.
    async fn create_groups(
        self,
        mut group: Vec<(NewJob, tokio::sync::oneshot::Sender<Result<Created>>)>,
    ) {
        // Should this task ever panic, the slot must not stay taken: every
        // later create would wait for it forever.
        struct Slot<'a>(&'a CreateGroup);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.state().in_flight -= 1;
                }
            }
        }
        let _slot = Slot(&self.group);
        loop {
            let (jobs, answers): (Vec<_>, Vec<_>) = group.into_iter().unzip();
            let saved = self.save(&jobs, None).await;
            match saved {
                Ok(Saved::Jobs(created)) if created.len() == jobs.len() => {
                    for (answer, created) in answers.into_iter().zip(created) {
                        let _ = answer.send(Ok(created));
                    }
                }
                Ok(_) => {
                    for answer in answers {
                        let _ = answer.send(Err(odd_create_reply("not one job each to a group")));
                    }
                }
                Err(err) => {
                    for answer in answers {
                        let _ = answer.send(Err(err.duplicate()));
                    }
                }
            }
            let mut state = self.group.state();
            if state.waiting.is_empty() {
                state.in_flight -= 1;
                return;
            }
            let take = state.waiting.len().min(MAX_BATCH_JOBS);
            group = state.waiting.drain(..take).collect();
        }
    }

    /// Saves and queues a batch of jobs with one script call, and returns
    /// them in the order given. Each job is saved and queued as in
    /// [`Store::create`], idempotency keys included (a key repeated inside the
    /// batch returns the job its first use created); the whole batch is
    /// checked before anything is written, so when a key was used for a
    /// different job, nothing is stored and the error names that job
    /// (`[3].idempotency_key`). At most [`MAX_BATCH_JOBS`] jobs.
    pub async fn create_many(&self, jobs: &[NewJob]) -> Result<Vec<Created>> {
        self.create_batch(jobs, None).await
    }

    /// [`Store::create_many`] for a batch submitted under one idempotency
    /// key, `key`, whose jobs carry keys of their own derived from it (REST's
    /// array under one `Idempotency-Key`). A repeat of the same batch
    /// returns its jobs; `key` used for any other batch, or for a single job,
    /// is refused (`idempotency_key`) and nothing is stored.
    pub async fn create_many_under(&self, key: &str, jobs: &[NewJob]) -> Result<Vec<Created>> {
        self.create_batch(jobs, Some(key)).await
    }

    async fn create_batch(&self, jobs: &[NewJob], key: Option<&str>) -> Result<Vec<Created>> {
        check_batch_size(jobs.len())?;
        match self.save(jobs, key).await? {
            Saved::Jobs(created) => Ok(created),
            Saved::KeyReused(Some(index)) => Err(key_reused(&format!("[{index}].idempotency_key"))),
            Saved::KeyReused(None) => Err(ValidationError::new(
                "idempotency_key",
                "already used for a different submission within the idempotency window",
            )
            .into()),
        }
    }

    /// Runs `create.lua` for the batch; `batch_key` is the key it was
    /// submitted under as a whole, if any.
    async fn save(&self, jobs: &[NewJob], batch_key: Option<&str>) -> Result<Saved> {
        let idempotency_ttl_ms = self.defaults.idempotency_ttl_secs.saturating_mul(1000);
        let mut invocation = scripts::CREATE.prepare_invoke();
        invocation
            .key(self.keys.queue())
            .key(self.keys.seq())
            .key(self.keys.status(JobStatus::Queued))
            .arg(self.keys.prefix())
            .arg(idempotency_ttl_ms);
        let mut prepared = Vec::with_capacity(jobs.len());
        for new in jobs {
            let job = self.prepare(new);
            invocation
                .key(self.keys.job(&job.jid))
                .key(
                    self.keys
                        .idempotency(new.idempotency_key().unwrap_or_default()),
                )
                .arg(job.jid.to_string())
                .arg(new.start())
                .arg(new.end())
                .arg(new.kind())
                .arg(&job.params)
                .arg(job.max_attempts)
                .arg(job.timeout_ms)
                .arg(new.idempotency_key().unwrap_or_default())
                .arg(new.trace_parent().map_or("", |parent| parent.as_str()));
            prepared.push(job);
        }
        if let Some(key) = batch_key {
            invocation.key(self.keys.idempotency(key));
        }
        let mut conn = self.conn.get().await?;
        let reply: Vec<redis::Value> = match invocation.invoke_async(&mut conn).await {
            Ok(reply) => reply,
            // The connection had dropped (Redis restarted since the last
            // call, say), and the manager now opens another. The call may
            // or may not have gone out: sent again with the same jids, it
            // creates the jobs, or is refused as a duplicate if the first
            // went through, and then they are read back.
            Err(err) if err.is_connection_dropped() => {
                let mut conn = self.conn.get().await?;
                match invocation.invoke_async(&mut conn).await {
                    Ok(reply) => reply,
                    Err(again) if again.code() == Some("DUPLICATE") => {
                        return self.read_back(&prepared).await.map(Saved::Jobs);
                    }
                    // Whether the first call ran is still unknown.
                    Err(_) => return Err(Error::from(err).of_write()),
                }
            }
            Err(err) => return Err(Error::from(err).of_write()),
        };
        let mut reply = reply.into_iter();
        let outcome: String = create_reply(reply.next())?;
        let second: String = create_reply(reply.next())?;
        if outcome == "mismatch" {
            if second == "batch" {
                return Ok(Saved::KeyReused(None));
            }
            return Ok(Saved::KeyReused(Some(
                second.parse().map_err(|_| odd_create_reply(&second))?,
            )));
        }
        let create_time = second
            .parse::<i64>()
            .ok()
            .and_then(chrono::DateTime::from_timestamp_micros)
            .ok_or_else(|| odd_create_reply(&format!("create time {second:?}")))?;
        if reply.len() != jobs.len() {
            return Err(odd_create_reply("one reply per job expected"));
        }
        reply
            .zip(jobs.iter().zip(prepared))
            .map(|(reply, (new, job))| match reply {
                redis::Value::Int(seq) => {
                    let seq =
                        u64::try_from(seq).map_err(|_| odd_create_reply(&format!("seq {seq}")))?;
                    Ok(Created {
                        job: job.created(new, create_time, seq),
                        replayed: false,
                    })
                }
                existing => Ok(Created {
                    job: record::job_from_pairs(&create_reply::<Vec<String>>(Some(existing))?)?,
                    replayed: true,
                }),
            })
            .collect::<Result<_>>()
            .map(Saved::Jobs)
    }

    /// The jobs a create stored, read back: for a call that went through
    /// although its answer was lost.
    async fn read_back(&self, prepared: &[Prepared]) -> Result<Vec<Created>> {
        let mut created = Vec::with_capacity(prepared.len());
        for job in prepared {
            created.push(Created {
                job: self.get(&job.jid).await?,
                replayed: false,
            });
        }
        Ok(created)
    }

    /// What the store adds to a submission: its id and the defaults.
    fn prepare(&self, new: &NewJob) -> Prepared {
        let params = if new.params().is_empty() {
            String::new()
        } else {
            serde_json::Value::Object(new.params().clone()).to_string()
        };
        Prepared {
            jid: JobId::new_random(),
            params,
            max_attempts: new.max_attempts().unwrap_or(self.defaults.max_attempts),
            timeout_ms: new.timeout().map_or(self.defaults.run_timeout_ms, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
            }),
        }
    }

    /// How much work waits: one read-only script call, for a metrics scrape
    /// (never per job).
    pub async fn queue_stats(&self) -> Result<QueueStats> {
        let mut conn = self.conn.get().await?;
        let (waiting, running, delayed, oldest_ms, now_ms): (u64, u64, u64, i64, i64) =
            scripts::STATS
                .key(self.keys.queue())
                .key(self.keys.delayed())
                .key(self.keys.status(JobStatus::Queued))
                .arg(GROUP)
                .arg(self.keys.prefix())
                .invoke_async(&mut conn)
                .await?;
        let oldest_waiting = (oldest_ms >= 0).then(|| {
            Duration::from_millis(u64::try_from(now_ms.saturating_sub(oldest_ms)).unwrap_or(0))
        });
        Ok(QueueStats {
            waiting,
            running,
            delayed,
            oldest_waiting,
        })
    }

    /// The job with id `jid`.
    pub async fn get(&self, jid: &JobId) -> Result<Job> {
        let mut conn = self.conn.get().await?;
        let fields: Vec<String> = redis::cmd("HGETALL")
            .arg(self.keys.job(jid))
            .query_async(&mut conn)
            .await?;
        if fields.is_empty() {
            return Err(Error::NotFound(*jid));
        }
        record::job_from_pairs(&fields)
    }

    /// One page of jobs, newest first. Jobs created while a client pages sort
    /// before its first page, so paging never shows a gap or a duplicate.
    /// A page holds fewer jobs than asked for when they are large (see
    /// [`MAX_PAGE_BYTES`]); only the absence of a next page token says that
    /// the list is done.
    pub async fn list(&self, query: &ListQuery) -> Result<JobPage> {
        let max = match query.after_seq {
            Some(seq) => format!("({seq}"),
            None => "+inf".to_owned(),
        };
        // A filter lists one status; no filter merges them all (list.lua).
        let statuses: &[JobStatus] = match &query.status {
            Some(status) => std::slice::from_ref(status),
            None => &JobStatus::ALL,
        };
        let mut invocation = scripts::LIST.prepare_invoke();
        invocation.key(self.keys.queue());
        for status in statuses {
            if *status != JobStatus::Running {
                invocation.key(self.keys.status(*status));
            }
        }
        let with_running = statuses.contains(&JobStatus::Running);
        invocation
            .arg(GROUP)
            .arg(self.keys.prefix())
            .arg(max)
            .arg(query.page_size)
            .arg(if with_running { "1" } else { "0" })
            .arg(MAX_PAGE_BYTES);
        let mut conn = self.conn.get().await?;
        let (more, pages): (i64, Vec<Vec<String>>) = invocation.invoke_async(&mut conn).await?;
        let jobs = pages
            .into_iter()
            .map(|page| record::job_from_pairs(&page))
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = match jobs.last() {
            Some(last) if more == 1 => Some(last.seq.to_string()),
            _ => None,
        };
        Ok(JobPage {
            jobs,
            next_page_token,
        })
    }

    /// The outcome of a finished job; [`Error::NotReady`] while it is queued
    /// or running, [`Error::ResultExpired`] for a success whose result is no
    /// longer kept.
    pub async fn outcome(&self, jid: &JobId) -> Result<JobOutcome> {
        let mut conn = self.conn.get().await?;
        let (fields, result): (Vec<String>, Option<String>) = redis::pipe()
            .cmd("HGETALL")
            .arg(self.keys.job(jid))
            .cmd("GET")
            .arg(self.keys.result(jid))
            .query_async(&mut conn)
            .await?;
        if fields.is_empty() {
            return Err(Error::NotFound(*jid));
        }
        let job = record::job_from_pairs(&fields)?;
        if !job.status.is_terminal() {
            return Err(Error::NotReady {
                jid: *jid,
                status: job.status,
            });
        }
        // A small result lives in the job hash (see finish.lua).
        let inline = record::field(&fields, "result").map(str::to_owned);
        let result = match (job.status, inline.or(result)) {
            (JobStatus::Success, Some(json)) => Some(
                serde_json::from_str(&json)
                    .map_err(|err| Error::Corrupt(format!("result of job {jid}: {err}")))?,
            ),
            // Every success stores its result, a null one too: none left
            // means it outlived the result TTL, which a null must not hide.
            (JobStatus::Success, None) => return Err(Error::ResultExpired(*jid)),
            _ => None,
        };
        Ok(JobOutcome {
            jid: *jid,
            status: job.status,
            result,
            error: job.error,
        })
    }

    /// Cancels a job: a queued one ends CANCELLED at once; a running one is
    /// flagged and its worker told to stop (it then ends CANCELLED). Returns
    /// the job after the request; [`Error::AlreadyFinished`] for a job that
    /// has finished.
    pub async fn cancel(&self, jid: &JobId) -> Result<Job> {
        let mut conn = self.conn.get().await?;
        let mut reply: Vec<String> = scripts::CANCEL
            .key(self.keys.job(jid))
            .key(self.keys.events(jid))
            .key(self.keys.cancel_channel())
            .key(self.keys.status(JobStatus::Queued))
            .key(self.keys.status(JobStatus::Cancelled))
            .key(self.keys.delayed())
            .key(self.keys.retention())
            .arg(jid.to_string())
            .arg(CANCEL_REASON)
            .arg(self.retention.job_ms())
            .invoke_async(&mut conn)
            .await?;
        if reply.is_empty() {
            return Err(Error::NotFound(*jid));
        }
        let outcome = reply.remove(0);
        let job = record::job_from_pairs(&reply)?;
        match outcome.as_str() {
            "finished" => Err(Error::AlreadyFinished {
                jid: *jid,
                status: job.status,
            }),
            _ => Ok(job),
        }
    }

    /// Follows a job: yields its current state at once, then every change,
    /// and ends after a terminal state. [`Error::NotFound`] (from this call,
    /// not the stream) when there is no such job.
    ///
    /// It subscribes before it reads, and drops events no newer than what it
    /// has sent, so no change between the read and the subscription is lost.
    pub async fn watch(
        &self,
        jid: JobId,
    ) -> Result<impl Stream<Item = Result<Job>> + Send + 'static> {
        let channel = self.keys.events(&jid);
        let mut subscription = self.hub.subscribe(&channel).await?;
        let current = self.get(&jid).await?;
        let (tx, rx) = mpsc::channel(16);
        let store = self.clone();
        tokio::spawn(async move {
            let mut last_version = current.version;
            let mut finished = current.status.is_terminal();
            if tx.send(Ok(current)).await.is_err() {
                return;
            }
            while !finished {
                let event = tokio::select! {
                    () = tx.closed() => return,
                    event = subscription.recv() => Some(event),
                    // A quiet spell: read the job again, in case an event
                    // was not published (the watching flag lost, say).
                    () = tokio::time::sleep(WATCH_RECHECK) => None,
                };
                let job = match event {
                    Some(Some(job)) => job,
                    None => match store.get(&jid).await {
                        Ok(job) => job,
                        // The subscription is still there; try again later.
                        Err(_) => continue,
                    },
                    // The shared subscription lost its connection: subscribe
                    // again and re-read, so no change in the gap is missed.
                    Some(None) => {
                        let again = async {
                            subscription = store.hub.subscribe(&channel).await?;
                            store.get(&jid).await
                        };
                        match again.await {
                            Ok(job) => job,
                            Err(err) => {
                                let _ = tx.send(Err(err)).await;
                                return;
                            }
                        }
                    }
                };
                if job.version <= last_version {
                    continue;
                }
                last_version = job.version;
                finished = job.status.is_terminal();
                if tx.send(Ok(job)).await.is_err() {
                    return;
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_info_reply() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(redis_version(info), Some(("7.0.15", (7, 0))));
        // Valkey reports the Redis version it is compatible with here.
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n";
        assert_eq!(redis_version(valkey), Some(("7.2.4", (7, 2))));
        assert_eq!(
            redis_version("redis_version:6.2.14\n"),
            Some(("6.2.14", (6, 2)))
        );
        assert_eq!(redis_version("redis_version:8\n"), Some(("8", (8, 0))));
        assert_eq!(redis_version("# Server\r\nuptime_in_seconds:5\r\n"), None);
        assert_eq!(redis_version("redis_version:unknown\r\n"), None);
    }

    #[tokio::test]
    async fn a_server_older_than_the_minimum_is_refused() {
        let redis = jobs_testkit::TestRedis::start();
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_connection_manager().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .unwrap();
        let (version, running) = redis_version(&info).expect("INFO names the version");

        check_server_version(&mut conn, running).await.unwrap();
        check_server_version(&mut conn, MIN_REDIS_VERSION)
            .await
            .expect("the test server is a supported one");
        match check_server_version(&mut conn, (running.0 + 1, 0)).await {
            Err(Error::UnsupportedRedis { found }) => assert_eq!(found, version),
            other => panic!("a newer minimum must refuse the server, got {other:?}"),
        }
        match check_server_version(&mut conn, (running.0, running.1 + 1)).await {
            Err(Error::UnsupportedRedis { found }) => assert_eq!(found, version),
            other => panic!("a newer minor minimum must refuse the server, got {other:?}"),
        }
    }

    #[test]
    fn the_refusal_names_both_versions() {
        let err = Error::UnsupportedRedis {
            found: "6.2.14".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "Redis 6.2.14 is not supported: Jobs needs Redis 7.0 or newer"
        );
    }
}

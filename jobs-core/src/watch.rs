//! One Redis pub/sub connection per process, fanned out to every watcher.
//!
//! Watchers of the same job share one channel subscription; the channel is
//! unsubscribed when its last watcher goes. If the connection drops, every
//! subscription ends (its receiver yields `None`) and the next subscribe opens
//! a new connection; watchers re-read the job then, so they miss nothing.
//!
//! While it has watchers, the hub keeps the key `{prefix}:watching` alive:
//! the claim and finish scripts look for subscribers to a job's channel only
//! while it exists, so that nobody watching costs them nothing. It is set
//! before any channel is subscribed, and refreshed well within its lifetime.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::mpsc;

use crate::{Job, Result, record, store::LazyConnection};

/// How long `{prefix}:watching` lives unless refreshed; the hub refreshes it
/// every third of that while anyone watches.
const FLAG_TTL: Duration = Duration::from_secs(60);

type Routes = HashMap<String, Vec<(u64, mpsc::UnboundedSender<Job>)>>;

/// Lazily connected pub/sub fan-out.
#[derive(Debug)]
pub(crate) struct WatchHub {
    client: redis::Client,
    flag: Arc<WatchFlag>,
    connection: tokio::sync::Mutex<Option<Arc<HubConnection>>>,
}

/// The `{prefix}:watching` key and when this process last set it.
#[derive(Debug)]
struct WatchFlag {
    key: String,
    commands: Arc<LazyConnection>,
    set_at: Mutex<Option<Instant>>,
}

impl WatchFlag {
    /// Sets the key unless this process set it within a third of its life.
    async fn raise(&self) -> Result<()> {
        let fresh = self
            .set_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < FLAG_TTL / 3);
        if fresh {
            return Ok(());
        }
        self.set().await
    }

    async fn set(&self) -> Result<()> {
        let mut conn = self.commands.get().await?;
        redis::cmd("SET")
            .arg(&self.key)
            .arg(1)
            .arg("PX")
            .arg(u64::try_from(FLAG_TTL.as_millis()).unwrap_or(u64::MAX))
            .query_async::<()>(&mut conn)
            .await?;
        *self.set_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        Ok(())
    }

    /// Forgets the last set, so the next subscription sets it again (a new
    /// connection may mean a restarted Redis, which lost it).
    fn forget(&self) {
        *self.set_at.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[derive(Debug)]
struct HubConnection {
    /// Held across SUBSCRIBE/UNSUBSCRIBE so that the decision "first or last
    /// watcher of a channel" and the command are one step.
    sink: tokio::sync::Mutex<PubSubSink>,
    routes: Mutex<Routes>,
    alive: AtomicBool,
    next_id: AtomicU64,
}

/// A watcher's end of a channel subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub(crate) struct Subscription {
    connection: Arc<HubConnection>,
    channel: String,
    id: u64,
    events: mpsc::UnboundedReceiver<Job>,
}

impl WatchHub {
    /// A hub over `client`, keeping the key `flag` while anyone watches
    /// (set through `commands`).
    pub(crate) fn new(client: redis::Client, flag: String, commands: Arc<LazyConnection>) -> Self {
        Self {
            client,
            flag: Arc::new(WatchFlag {
                key: flag,
                commands,
                set_at: Mutex::new(None),
            }),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Subscribes to `channel`; returns once Redis has confirmed it.
    pub(crate) async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        let connection = self.connection().await?;
        // Before the subscription: a change from then on is published.
        self.flag.raise().await?;
        let (tx, events) = mpsc::unbounded_channel();
        let id = connection.next_id.fetch_add(1, Ordering::Relaxed);
        let mut sink = connection.sink.lock().await;
        let first = {
            let mut routes = connection.lock_routes();
            let watchers = routes.entry(channel.to_owned()).or_default();
            watchers.push((id, tx));
            watchers.len() == 1
        };
        if first && let Err(err) = sink.subscribe(channel).await {
            connection.remove_route(channel, id);
            return Err(err.into());
        }
        drop(sink);
        Ok(Subscription {
            connection,
            channel: channel.to_owned(),
            id,
            events,
        })
    }

    async fn connection(&self) -> Result<Arc<HubConnection>> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.alive.load(Ordering::Acquire)) {
            return Ok(connection.clone());
        }
        let (sink, mut stream) = self.client.get_async_pubsub().await?.split();
        let connection = Arc::new(HubConnection {
            sink: tokio::sync::Mutex::new(sink),
            routes: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            next_id: AtomicU64::new(0),
        });
        self.flag.forget();
        let (refresher, flag) = (connection.clone(), self.flag.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(FLAG_TTL / 3);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            while refresher.alive.load(Ordering::Acquire) {
                ticks.tick().await;
                let watched = !refresher.lock_routes().is_empty();
                if watched && let Err(err) = flag.set().await {
                    tracing::warn!(%err, "cannot refresh the watching flag");
                }
            }
        });
        let reader = connection.clone();
        tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                reader.dispatch(&message);
            }
            tracing::warn!("Redis pub/sub connection closed; watchers will resubscribe");
            reader.alive.store(false, Ordering::Release);
            // Dropping the senders ends every subscription on this connection.
            reader.lock_routes().clear();
        });
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

impl HubConnection {
    fn lock_routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // The map stays consistent even if a holder panicked: every update is
        // a single insert or removal.
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dispatch(&self, message: &redis::Msg) {
        let channel = message.get_channel_name();
        let job = serde_json::from_slice::<Vec<String>>(message.get_payload_bytes())
            .map_err(|err| crate::Error::Corrupt(err.to_string()))
            .and_then(|fields| record::job_from_pairs(&fields));
        match job {
            Ok(job) => {
                if let Some(watchers) = self.lock_routes().get(channel) {
                    for (_, tx) in watchers {
                        let _ = tx.send(job.clone());
                    }
                }
            }
            Err(err) => tracing::warn!(channel, %err, "skipping an unreadable job event"),
        }
    }

    /// Removes one watcher; true when it was the channel's last.
    fn remove_route(&self, channel: &str, id: u64) -> bool {
        let mut routes = self.lock_routes();
        let Some(watchers) = routes.get_mut(channel) else {
            return false;
        };
        watchers.retain(|(watcher, _)| *watcher != id);
        if watchers.is_empty() {
            routes.remove(channel);
            return true;
        }
        false
    }
}

impl Subscription {
    /// The next event; `None` once the connection has dropped.
    pub(crate) async fn recv(&mut self) -> Option<Job> {
        self.events.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.connection.remove_route(&self.channel, self.id) {
            return;
        }
        let connection = self.connection.clone();
        let channel = std::mem::take(&mut self.channel);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut sink = connection.sink.lock().await;
                // A watcher may have arrived since; it then keeps the channel.
                if !connection.lock_routes().contains_key(&channel) {
                    let _ = sink.unsubscribe(&channel).await;
                }
            });
        }
    }
}

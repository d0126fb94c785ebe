//! `jobs data load`: a JSON array of records, read incrementally and streamed
//! to `DataService/LoadData`, with a progress bar on a terminal.
//!
//! A thread parses the file one record at a time and hands batches to the
//! call through a small bounded channel, so memory stays flat however large
//! the file is, and the file is read only as fast as the server takes it.
//!
//! The server stores a load only when its stream ends cleanly. So the stream
//! ends only after the reader saw the whole array; when reading fails (a
//! record that is not an object, broken JSON), the stream is never ended but
//! dropped, which cancels the call, and nothing is stored.

use std::{
    cell::Cell,
    fmt,
    fs::File,
    io::{BufReader, IsTerminal, Read},
    time::Duration,
};

use anyhow::{Context, anyhow};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use jobs_proto::pb;
use prost::Message;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::commands::DataClient;

/// Records per batch handed from the reader to the call.
const BATCH_RECORDS: usize = 500;
/// Encoded bytes after which a batch goes early, so large records do not
/// pile up in memory.
const BATCH_BYTES: usize = 1024 * 1024;
/// Batches in flight between the reader and the call.
const BATCHES_IN_FLIGHT: usize = 4;
/// The largest message the server decodes (its `MAX_MESSAGE_BYTES`): a
/// bigger record is refused here, by index, rather than by the server
/// without one.
const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// What a load stored.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// How many records the server stored.
    pub(crate) loaded: u64,
    /// Every record's id, in file order.
    pub(crate) ids: Vec<String>,
    /// The indexes of the records that had no `id`, whose ids the server
    /// generated.
    pub(crate) generated: Vec<usize>,
}

/// What the reader hands to the call.
enum Chunk {
    /// Records, and how far into the input the reader has got, in bytes.
    Records(Vec<pb::LoadDataRequest>, u64),
    /// The whole array was read and is well-formed: the stream may end.
    End,
}

/// Loads `source` (a path, or `-` for stdin) through `client`.
pub(crate) async fn load(client: &mut DataClient, source: &str) -> anyhow::Result<Loaded> {
    let (input, name, size): (Box<dyn Read + Send>, String, Option<u64>) = if source == "-" {
        (Box::new(std::io::stdin()), "stdin".to_owned(), None)
    } else {
        let file = File::open(source).with_context(|| format!("cannot read {source}"))?;
        let size = file
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|meta| meta.len());
        (Box::new(file), source.to_owned(), size)
    };
    let bar = progress_bar(size);
    let outcome = send(client, input, name, &bar).await;
    // Cleared on every path, so an error is the only line left on stderr.
    bar.finish_and_clear();
    outcome
}

/// Streams the records of `input` (called `name` in errors) to the call.
async fn send(
    client: &mut DataClient,
    input: Box<dyn Read + Send>,
    name: String,
    bar: &ProgressBar,
) -> anyhow::Result<Loaded> {
    let (chunks, received) = mpsc::channel(BATCHES_IN_FLIGHT);
    // Closed once the call has dropped its stream: it has ended. Holding it
    // keeps the channel open after the reader is done, which the stream
    // treats as it treats a failed read's closed channel: it waits.
    let call_ended = chunks.clone();
    let (done, mut read) = oneshot::channel();
    // A thread of its own rather than `spawn_blocking`: the runtime waits
    // for blocking tasks when it shuts down, and a read blocked on stdin
    // must not keep a failed load from exiting.
    std::thread::spawn(move || {
        let outcome = read_records(BufReader::new(input), &chunks)
            .with_context(|| name.clone())
            .and_then(|generated| {
                chunks
                    .blocking_send(Chunk::End)
                    .map_err(|_| anyhow!("the load was stopped"))?;
                Ok(generated)
            });
        // Closed before the outcome is reported, so that the stream meets
        // a failed read's closed channel first: it must wait, not end.
        drop(chunks);
        let _ = done.send(outcome);
    });

    let call = client.load_data(outgoing(received, bar.clone()));
    tokio::pin!(call);
    // The reader's sender is dropped unsent only if its thread panicked.
    let reader_died = |_| Err(anyhow!("reading the records stopped unexpectedly"));
    let (answer, generated) = tokio::select! {
        outcome = &mut read => match outcome.unwrap_or_else(reader_died) {
            Ok(generated) => (call.await, generated),
            // The call ended first (a refusal) and so stopped the reader:
            // the call's words are the outcome.
            Err(stopped) if call_ended.is_closed() => {
                call.await?;
                return Err(stopped);
            }
            // On a reading error, returning drops the call with its stream
            // unfinished, which cancels it: the server stores nothing.
            Err(err) => return Err(err),
        },
        // The server answered first: a refusal, whose words matter more
        // than how far reading got, or (rarely) success just before the
        // reader reported.
        answer = &mut call => {
            let answer = answer?;
            (Ok(answer), read.await.unwrap_or_else(reader_died)?)
        }
    };
    let response = answer?.into_inner();
    Ok(Loaded {
        loaded: response.loaded,
        ids: response.ids,
        generated,
    })
}

/// The call's request stream: the reader's batches, one record per
/// message, moving the bar as the call takes them.
fn outgoing(
    chunks: mpsc::Receiver<Chunk>,
    bar: ProgressBar,
) -> impl futures_util::Stream<Item = pb::LoadDataRequest> + Send + 'static {
    futures_util::stream::unfold(
        (chunks, bar, 0usize),
        |(mut chunks, bar, sent)| async move {
            match chunks.recv().await {
                Some(Chunk::Records(records, read)) => {
                    let sent = sent + records.len();
                    bar.set_position(read);
                    bar.set_message(format!("{sent} records"));
                    Some((futures_util::stream::iter(records), (chunks, bar, sent)))
                }
                Some(Chunk::End) => {
                    bar.set_message(format!("{sent} records; storing"));
                    None
                }
                // The reader failed before the end. Ending the stream now would
                // store what was sent; waiting lets the caller cancel the call.
                None => std::future::pending().await,
            }
        },
    )
    .flatten()
}

/// A bar in bytes of the input on a terminal's stderr (a spinner when the
/// size is unknown, as for stdin); hidden otherwise.
fn progress_bar(size: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match size {
        Some(len) => (
            ProgressBar::new(len),
            "{spinner} [{bar:24}] {bytes}/{total_bytes} {elapsed:>3}  {wide_msg}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {bytes} {elapsed:>3}  {wide_msg}",
        ),
    };
    // A template without colour tags: NO_COLOR needs no special case.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Parses the array from `input`, sending batches of records to `chunks`;
/// returns the indexes of the records without an id. An error names the
/// record it is in (`records[7]: …`) and its line and column.
fn read_records(input: impl Read, chunks: &mpsc::Sender<Chunk>) -> anyhow::Result<Vec<usize>> {
    let read = Cell::new(0);
    let at = Cell::new(None);
    let mut json = serde_json::Deserializer::from_reader(Counting {
        inner: input,
        read: &read,
    });
    let records = Records {
        chunks,
        read: &read,
        at: &at,
    };
    json.deserialize_seq(records)
        .and_then(|generated| {
            json.end()?;
            Ok(generated)
        })
        .map_err(|err| match at.get() {
            Some(index) => anyhow!("records[{index}]: {err}"),
            None => anyhow!(err),
        })
}

/// Counts the bytes read, for the progress bar.
struct Counting<'a, R> {
    inner: R,
    read: &'a Cell<u64>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// Visits the array element by element, so only one batch is ever held.
struct Records<'a> {
    chunks: &'a mpsc::Sender<Chunk>,
    read: &'a Cell<u64>,
    /// The index of the record being read; `None` outside the array.
    at: &'a Cell<Option<usize>>,
}

impl Records<'_> {
    fn send<E: de::Error>(&self, batch: Vec<pb::LoadDataRequest>) -> Result<(), E> {
        self.chunks
            .blocking_send(Chunk::Records(batch, self.read.get()))
            // The call has ended; its outcome is what gets reported.
            .map_err(|_| E::custom("the load was stopped"))
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = Vec<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<usize>, A::Error> {
        let mut generated = Vec::new();
        let (mut batch, mut batch_bytes) = (Vec::new(), 0);
        let mut index = 0;
        loop {
            self.at.set(Some(index));
            let Some(value) = seq.next_element::<Value>()? else {
                break;
            };
            let Value::Object(record) = value else {
                return Err(de::Error::custom(format!(
                    "must be a JSON object, not {}",
                    jobs_core::json_type_name(&value)
                )));
            };
            if !record.contains_key("id") {
                generated.push(index);
            }
            let message = pb::LoadDataRequest {
                record: Some(jobs_proto::params_to_struct(record)),
            };
            let bytes = message.encoded_len();
            if bytes > MAX_RECORD_BYTES {
                return Err(de::Error::custom(format!(
                    "{bytes} bytes; a record may take at most {MAX_RECORD_BYTES}"
                )));
            }
            batch.push(message);
            batch_bytes += bytes;
            if batch.len() >= BATCH_RECORDS || batch_bytes >= BATCH_BYTES {
                self.send(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
            index += 1;
        }
        self.at.set(None);
        if !batch.is_empty() {
            self.send(batch)?;
        }
        Ok(generated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` as a load would: the records sent, and the outcome.
    fn read(text: &str) -> (usize, anyhow::Result<Vec<usize>>) {
        let (chunks, mut received) = mpsc::channel(1000);
        let outcome = read_records(text.as_bytes(), &chunks);
        let mut records = 0;
        while let Ok(Chunk::Records(batch, _)) = received.try_recv() {
            assert!(batch.len() <= BATCH_RECORDS);
            records += batch.len();
        }
        (records, outcome)
    }

    #[tokio::test]
    async fn the_stream_ends_only_after_the_whole_array() {
        let bar = ProgressBar::hidden();
        let record = || pb::LoadDataRequest::default();

        let (chunks, received) = mpsc::channel(4);
        chunks
            .send(Chunk::Records(vec![record(), record()], 10))
            .await
            .unwrap();
        chunks.send(Chunk::End).await.unwrap();
        let sent: Vec<_> = outgoing(received, bar.clone()).collect().await;
        assert_eq!(sent.len(), 2);

        // A reader that failed closes the channel without `End`: ending the
        // stream would store the records sent so far.
        let (chunks, received) = mpsc::channel(4);
        chunks
            .send(Chunk::Records(vec![record()], 10))
            .await
            .unwrap();
        drop(chunks);
        let mut stream = Box::pin(outgoing(received, bar));
        assert!(stream.next().await.is_some());
        let next = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
        assert!(next.is_err(), "the stream ended: {next:?}");
    }

    #[test]
    fn records_without_an_id_are_noted_and_batches_stay_small() {
        let many: Vec<String> = (0..1200).map(|i| format!(r#"{{"id": {i}}}"#)).collect();
        let (records, outcome) = read(&format!("[{}, {{\"name\": \"x\"}}]", many.join(",")));
        assert_eq!(records, 1201);
        assert_eq!(outcome.unwrap(), [1200]);
        assert_eq!(read("[]").1.unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn errors_name_the_record() {
        for (text, expected) in [
            (
                r#"[{"id": 1}, 5]"#,
                "records[1]: must be a JSON object, not a number",
            ),
            (r#"[{"id": 1}, {"id": 2,}]"#, "records[1]: trailing comma"),
            (
                r#"{"id": 1}"#,
                "invalid type: map, expected a JSON array of objects",
            ),
            (r#"[{"id": 1}] x"#, "trailing characters"),
            (r#"[{"id": 1}"#, "records[1]: EOF while parsing a list"),
        ] {
            let err = read(text).1.unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text}: {err}");
            assert!(err.contains(" line 1 column "), "{text}: {err}");
        }
    }
}

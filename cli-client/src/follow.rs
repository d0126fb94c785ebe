//! Following a job through `WatchJob` until it ends, with a progress bar for
//! people at a terminal. Used by `jobs watch` and `jobs submit --wait`.

use std::{io::IsTerminal, time::Duration};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use jobs_proto::pb;

use tonic::Code;

use crate::{
    commands::{JobsClient, answer},
    errors::{ConnectionLost, answered_without_grpc},
    output::{is_terminal, status_name},
};

/// Bar positions per whole job: progress is a fraction, the bar counts.
const BAR_STEPS: u64 = 1000;

/// Streams the job's states to `on_update` (the current one first) and
/// returns the terminal one.
pub(crate) async fn follow(
    client: &mut JobsClient,
    jid: &str,
    mut on_update: impl FnMut(&pb::Job) -> anyhow::Result<()>,
) -> anyhow::Result<pb::Job> {
    // Only the opening is timed: the stream may rightly last hours.
    let mut updates = answer(client.watch_job(pb::WatchJobRequest {
        jid: jid.to_owned(),
    }))
    .await?;
    let mut seen = false;
    while let Some(update) = updates
        .message()
        .await
        .map_err(|status| lost(status, jid, seen))?
    {
        seen = true;
        let job = update
            .job
            .context("the server sent an update without a job")?;
        on_update(&job)?;
        if is_terminal(job.status()) {
            return Ok(job);
        }
    }
    // The server ends streams early only when it shuts down.
    bail!(
        "the server stopped the watch before job {jid} ended; `jobs watch {jid}` follows it again"
    )
}

/// An error reading the open stream. Statuses the server sends end a watch
/// as they are; the codes tonic makes up when the connection itself breaks
/// (keep-alive pings unanswered, the peer gone) become [`ConnectionLost`],
/// exit code 4 like any unreachable server. An HTTP/2 answer that was never
/// gRPC, before any update was `seen`, goes as it is instead: `errors` says
/// that no Jobs server answered at that address.
fn lost(status: tonic::Status, jid: &str, seen: bool) -> anyhow::Error {
    if !seen && answered_without_grpc(&status) {
        return status.into();
    }
    match status.code() {
        Code::Unknown | Code::Internal | Code::Cancelled => ConnectionLost {
            jid: jid.to_owned(),
            cause: status.message().to_owned(),
        }
        .into(),
        _ => status.into(),
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal, so
/// redirected output and logs never fill with redraws.
#[derive(Debug)]
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar if stderr is a terminal, nothing otherwise.
    pub(crate) fn for_terminal() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new(BAR_STEPS);
        // A template without colour tags: NO_COLOR needs no special case.
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg:<9} [{bar:30}] {percent:>3}%  {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        // Ticks keep the spinner moving while the job waits in the queue.
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(Some(bar))
    }

    /// No bar (for JSON output, which is for programs).
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// Whether a bar is being drawn.
    pub(crate) fn is_drawn(&self) -> bool {
        self.0.is_some()
    }

    /// Shows the job's status and progress.
    pub(crate) fn update(&self, job: &pb::Job) {
        if let Some(bar) = &self.0 {
            bar.set_message(status_name(job.status()));
            let done = if job.status() == pb::JobStatus::Success {
                1.0
            } else {
                job.progress.clamp(0.0, 1.0)
            };
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )] // clamped to 0..=1 above, so 0..=BAR_STEPS
            bar.set_position((done * BAR_STEPS as f64) as u64);
        }
    }

    /// Removes the bar, so the final lines stand alone.
    pub(crate) fn clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_without_grpc_is_no_lost_connection_until_an_update_came() {
        let no_grpc = || tonic::Status::unknown("protocol error: missing grpc-status trailer");
        let before = lost(no_grpc(), "j", false);
        assert!(
            before.downcast_ref::<tonic::Status>().is_some(),
            "{before:?}"
        );
        // After an update the server has shown it speaks gRPC: a stream cut
        // short (a proxy's reset, say) is a lost connection.
        let after = lost(no_grpc(), "j", true);
        assert!(
            after.downcast_ref::<ConnectionLost>().is_some(),
            "{after:?}"
        );
    }
}

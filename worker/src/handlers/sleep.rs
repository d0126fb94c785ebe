//! `sleep`: waits `end - start` milliseconds, reporting progress as it goes.

use std::time::{Duration, Instant};

use jobs_core::kinds::sleep;

use super::{JobContext, JobFailure};

/// About twenty progress reports per job, but none closer than this.
const MIN_STEP: Duration = Duration::from_millis(50);

pub(super) async fn run(mut ctx: JobContext) -> Result<serde_json::Value, JobFailure> {
    let total = sleep::duration(ctx.job().start, ctx.job().end);
    let step = (total / 20).max(MIN_STEP);
    let started = Instant::now();
    loop {
        let elapsed = started.elapsed();
        if elapsed >= total {
            return Ok(serde_json::Value::Null);
        }
        ctx.report_progress(elapsed.as_secs_f64() / total.as_secs_f64())
            .await;
        let cancel = ctx.cancellation().clone();
        tokio::select! {
            () = tokio::time::sleep(step.min(total - elapsed)) => {}
            () = cancel.cancelled() => return Err(JobFailure::new("stopped: cancelled")),
        }
    }
}

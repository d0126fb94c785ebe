//! `sum`: the exact sum of start..=end.

use jobs_core::kinds::sum;

use super::{JobContext, JobFailure};

pub(super) async fn run(ctx: JobContext) -> Result<serde_json::Value, JobFailure> {
    let job = ctx.job();
    serde_json::to_value(sum::sum(job.start, job.end))
        .map_err(|err| JobFailure::new(format!("cannot encode the sum: {err}")))
}

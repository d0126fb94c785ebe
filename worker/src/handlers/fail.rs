//! `fail`: fails with the job's message, for the first `fail_attempts`
//! attempts or for all of them.

use jobs_core::kinds::fail::FailParams;

use super::{JobContext, JobFailure};

pub(super) async fn run(ctx: JobContext) -> Result<serde_json::Value, JobFailure> {
    let params =
        FailParams::parse(&ctx.job().params).map_err(|err| JobFailure::new(err.to_string()))?;
    if params.fails(ctx.attempt()) {
        return Err(JobFailure::new(params.message));
    }
    Ok(serde_json::Value::Null)
}

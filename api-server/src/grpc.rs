//! `jobs.v1.JobService`: each handler parses its request into domain values,
//! calls the store, and converts the answer back.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use jobs_core::{JobId, ListQuery, NewJob, Store};
use jobs_proto::{new_jobs, pb, status_filter};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    errors::status,
    observe::{self, Observer, TRACEPARENT},
};

/// The gRPC face of the store.
#[derive(Debug, Clone)]
pub(crate) struct JobsGrpc {
    store: Store,
    observer: Observer,
    /// Ends watch streams when the server shuts down, so draining finishes.
    shutdown: CancellationToken,
}

impl JobsGrpc {
    pub(crate) fn new(store: Store, observer: Observer, shutdown: CancellationToken) -> Self {
        Self {
            store,
            observer,
            shutdown,
        }
    }
}

/// Why a watch ends before its job does.
const SHUTTING_DOWN: &str = "the server is shutting down before the job ended; watch it again";

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchJobResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::job_service_server::JobService for JobsGrpc {
    async fn create_job(
        &self,
        request: Request<pb::CreateJobRequest>,
    ) -> Result<Response<pb::CreateJobResponse>, Status> {
        let caller = request
            .metadata()
            .get(TRACEPARENT)
            .map(|value| value.as_bytes().to_vec());
        let mut new = NewJob::try_from(request.into_inner()).map_err(status)?;
        if let Some(parent) = jobs_worker::telemetry::trace_parent_to_store(caller.as_deref()) {
            new = new.with_trace_parent(parent);
        }
        let created = self.store.create(&new).await.map_err(status)?;
        let job = created.job;
        observe::record_jid(&job.jid);
        if !created.replayed {
            self.observer.created(&job.kind);
        }
        tracing::debug!(jid = %job.jid, kind = %job.kind, replayed = created.replayed, "job created");
        Ok(Response::new(pb::CreateJobResponse {
            job: Some(job.into()),
        }))
    }

    async fn create_jobs(
        &self,
        request: Request<pb::CreateJobsRequest>,
    ) -> Result<Response<pb::CreateJobsResponse>, Status> {
        let caller = request
            .metadata()
            .get(TRACEPARENT)
            .map(|value| value.as_bytes().to_vec());
        let mut batch = new_jobs(request.into_inner()).map_err(status)?;
        // Every job of the batch joins the caller's trace.
        if let Some(parent) = jobs_worker::telemetry::trace_parent_to_store(caller.as_deref()) {
            batch = batch
                .into_iter()
                .map(|new| new.with_trace_parent(parent.clone()))
                .collect();
        }
        let created = self
            .store
            .create_many(&batch)
            .await
            .map_err(|err| match err {
                // The store names the job as `[3].idempotency_key`.
                jobs_core::Error::Invalid(invalid) => status(invalid.within("jobs")),
                err => status(err),
            })?;
        let mut jobs = Vec::with_capacity(created.len());
        for created in created {
            if !created.replayed {
                self.observer.created(&created.job.kind);
            }
            jobs.push(created.job.into());
        }
        tracing::debug!(count = jobs.len(), "jobs created");
        Ok(Response::new(pb::CreateJobsResponse { jobs }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let jid = JobId::parse(&request.get_ref().jid).map_err(status)?;
        let job = self.store.get(&jid).await.map_err(status)?;
        Ok(Response::new(pb::GetJobResponse {
            job: Some(job.into()),
        }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let request = request.into_inner();
        let filter = status_filter(request.status).map_err(status)?;
        let query = ListQuery::new(request.page_size.into(), &request.page_token, filter)
            .map_err(status)?;
        let page = self.store.list(&query).await.map_err(status)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page.jobs.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_job_result(
        &self,
        request: Request<pb::GetJobResultRequest>,
    ) -> Result<Response<pb::GetJobResultResponse>, Status> {
        let jid = JobId::parse(&request.get_ref().jid).map_err(status)?;
        let outcome = self.store.outcome(&jid).await.map_err(status)?;
        Ok(Response::new(outcome.into()))
    }

    type WatchJobStream = WatchStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let jid = JobId::parse(&request.get_ref().jid).map_err(status)?;
        let updates = Box::pin(self.store.watch(jid).await.map_err(status)?);
        let shutdown = self.shutdown.clone();
        // Until the job is terminal (the store's stream ends) or the server
        // shuts down. The contract promises the first, so the second ends
        // with an error: an OK end would tell the client the job is done.
        let stream = futures_util::stream::unfold(Some(updates), move |updates| {
            let shutdown = shutdown.clone();
            async move {
                let mut updates = updates?;
                tokio::select! {
                    // An update already there goes out before the shutdown.
                    biased;
                    update = updates.next() => {
                        let item = match update? {
                            Ok(job) => Ok(pb::WatchJobResponse {
                                job: Some(job.into()),
                            }),
                            Err(err) => Err(status(err)),
                        };
                        Some((item, Some(updates)))
                    }
                    () = shutdown.cancelled() => Some((Err(Status::unavailable(SHUTTING_DOWN)), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let jid = JobId::parse(&request.get_ref().jid).map_err(status)?;
        observe::record_jid(&jid);
        let job = self.store.cancel(&jid).await.map_err(status)?;
        self.observer.cancelled(&job.kind, job.status);
        tracing::info!(%jid, status = %job.status, "cancellation requested");
        Ok(Response::new(pb::CancelJobResponse {
            job: Some(job.into()),
        }))
    }
}

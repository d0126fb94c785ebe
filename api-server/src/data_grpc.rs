//! `jobs.v1.DataService`: each handler parses its request into domain
//! values, calls the dataset, and converts the answer back.

use jobs_core::{DataQuery, Dataset, NewRecords, RecordId, ValidationError};
use jobs_proto::{load_record, params_to_struct, pb};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::errors::status;

/// The gRPC face of the dataset.
#[derive(Debug, Clone)]
pub(crate) struct DataGrpc {
    dataset: Dataset,
    /// The most a load may send in all, in bytes: the REST body limit of
    /// `/data`, so neither face holds more in memory than the other.
    max_load_bytes: usize,
}

impl DataGrpc {
    pub(crate) fn new(dataset: Dataset, max_load_bytes: usize) -> Self {
        Self {
            dataset,
            max_load_bytes,
        }
    }
}

#[tonic::async_trait]
impl pb::data_service_server::DataService for DataGrpc {
    async fn load_data(
        &self,
        request: Request<Streaming<pb::LoadDataRequest>>,
    ) -> Result<Response<pb::LoadDataResponse>, Status> {
        let mut stream = request.into_inner();
        let mut records = Vec::new();
        let mut bytes = 0usize;
        while let Some(message) = stream.message().await? {
            bytes = bytes.saturating_add(message.encoded_len());
            if bytes > self.max_load_bytes {
                return Err(status(ValidationError::new(
                    "records",
                    format!(
                        "the load exceeds {} bytes (JOBS_HTTP_DATA_BODY_LIMIT)",
                        self.max_load_bytes
                    ),
                )));
            }
            records.push(load_record(message, records.len()).map_err(status)?);
        }
        let load = NewRecords::parse(records).map_err(status)?;
        let ids = self.dataset.load(&load).await.map_err(status)?;
        Ok(Response::new(pb::LoadDataResponse {
            loaded: ids.len() as u64,
            ids: ids.into_iter().map(|id| id.to_string()).collect(),
        }))
    }

    async fn list_data(
        &self,
        request: Request<pb::ListDataRequest>,
    ) -> Result<Response<pb::ListDataResponse>, Status> {
        let query = DataQuery::try_from(request.into_inner()).map_err(status)?;
        let page = self.dataset.list(&query).await.map_err(status)?;
        Ok(Response::new(page.into()))
    }

    async fn get_data(
        &self,
        request: Request<pb::GetDataRequest>,
    ) -> Result<Response<pb::GetDataResponse>, Status> {
        let id = RecordId::parse(&request.get_ref().id).map_err(status)?;
        let record = self.dataset.get(&id).await.map_err(status)?;
        Ok(Response::new(pb::GetDataResponse {
            record: Some(params_to_struct(record)),
        }))
    }

    async fn delete_data(
        &self,
        _request: Request<pb::DeleteDataRequest>,
    ) -> Result<Response<pb::DeleteDataResponse>, Status> {
        let deleted = self.dataset.clear().await.map_err(status)?;
        tracing::info!(deleted, "dataset cleared");
        Ok(Response::new(pb::DeleteDataResponse { deleted }))
    }
}

//! Conversions of `jobs.v1.DataService` messages to and from dataset values.

use jobs_core::{DataPage, DataQuery, ValidationError};
use serde_json::Value;

use crate::{params_to_struct, pb, struct_to_params};

/// The record of the `index`th message of a load, as JSON; errors name it
/// `records[index]`, as the load's own checks do.
pub fn load_record(request: pb::LoadDataRequest, index: usize) -> Result<Value, ValidationError> {
    let path = format!("records[{index}]");
    let record = request
        .record
        .ok_or_else(|| ValidationError::new(&path, "the message holds no record"))?;
    let record = struct_to_params(record).map_err(|err| {
        // Struct fields are named `params.…` by the shared conversion.
        let field = err.field().replacen("params", &path, 1);
        ValidationError::new(field, err.message())
    })?;
    Ok(Value::Object(record))
}

impl TryFrom<pb::ListDataRequest> for DataQuery {
    type Error = ValidationError;

    fn try_from(request: pb::ListDataRequest) -> Result<Self, Self::Error> {
        DataQuery::new(
            request.page_size.into(),
            &request.page_token,
            &request.search,
        )
    }
}

impl From<DataPage> for pb::ListDataResponse {
    fn from(page: DataPage) -> Self {
        pb::ListDataResponse {
            records: page.records.into_iter().map(params_to_struct).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use prost_types::{Struct, Value as PbValue, value::Kind};

    use super::*;

    #[test]
    fn the_descriptor_set_holds_the_data_service() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        let file = set
            .file
            .iter()
            .find(|file| file.name() == "jobs/v1/data.proto")
            .expect("data.proto is in the set");
        let service = &file.service[0];
        assert_eq!(service.name(), "DataService");
        let methods: Vec<_> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(methods, ["LoadData", "ListData", "GetData", "DeleteData"]);
        assert!(service.method[0].client_streaming());
    }

    #[test]
    fn a_load_message_becomes_a_json_object_and_errors_name_the_record() {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(
            "id".to_owned(),
            PbValue {
                kind: Some(Kind::NumberValue(7.0)),
            },
        );
        let record = load_record(
            pb::LoadDataRequest {
                record: Some(Struct { fields }),
            },
            0,
        )
        .unwrap();
        assert_eq!(record, serde_json::json!({"id": 7}));

        let err = load_record(pb::LoadDataRequest { record: None }, 3).unwrap_err();
        assert_eq!(err.field(), "records[3]");
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(
            "x".to_owned(),
            PbValue {
                kind: Some(Kind::NumberValue(f64::NAN)),
            },
        );
        let err = load_record(
            pb::LoadDataRequest {
                record: Some(Struct { fields }),
            },
            2,
        )
        .unwrap_err();
        assert_eq!(err.field(), "records[2].x");
    }
}

//! What grpcurl and orchestrators rely on: reflection (v1 and v1alpha),
//! health, and the real `jobs-api --dev` binary giving a working system.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first broken assumption

mod support;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use jobs_proto::pb::{self, job_service_client::JobServiceClient};
use prost::Message;
use support::{TestApp, within};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn reflection_v1_lists_every_service_and_describes_the_schema() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = TestApp::start().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("jobs.v1.JobService".into()),
        MessageRequest::FileByFilename("google/protobuf/struct.proto".into()),
    ]
    .map(|request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    });
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let Some(MessageResponse::ListServicesResponse(list)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "jobs.v1.JobService",
        "jobs.v1.DataService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    let Some(MessageResponse::FileDescriptorResponse(files)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    let files: Vec<_> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .collect();
    let schema = files
        .iter()
        .find(|f| f.name() == "jobs/v1/jobs.proto")
        .expect("jobs.proto");
    assert!(
        schema
            .dependency
            .iter()
            .any(|d| d == "google/protobuf/struct.proto")
    );

    // grpcurl then fetches the imports by name: they must be there too.
    let Some(MessageResponse::FileDescriptorResponse(imports)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected the imported file");
    };
    let import =
        prost_types::FileDescriptorProto::decode(imports.file_descriptor_proto[0].as_slice())
            .unwrap();
    assert_eq!(import.name(), "google/protobuf/struct.proto");
    app.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_answers_for_older_grpcurl() {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = TestApp::start().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    assert!(list.service.iter().any(|s| s.name == "jobs.v1.JobService"));
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "grpc.health.v1.Health")
    );
    app.stop().await;
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_job_service() {
    let app = TestApp::start().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "jobs.v1.JobService", "jobs.v1.DataService"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_dev_binary_alone_runs_jobs_and_stops_cleanly_on_sigterm() {
    let redis = jobs_testkit::TestRedis::start();
    let port = jobs_testkit::free_port();
    let mut server = jobs_testkit::Spawned::new(
        Command::new(env!("CARGO_BIN_EXE_jobs-api"))
            .arg("--dev")
            .env("REDIS_URL", redis.url())
            .env("JOBS_KEY_PREFIX", redis.prefix())
            .env("JOBS_GRPC_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "JOBS_HTTP_ADDR",
                format!("127.0.0.1:{}", jobs_testkit::free_port()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let channel = within(Duration::from_secs(20), async {
        loop {
            let endpoint =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap();
            match endpoint.connect().await {
                Ok(channel) => break channel,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    let mut client = JobServiceClient::new(channel);
    let job = client
        .create_job(pb::CreateJobRequest {
            start: 1,
            end: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let mut updates = client
        .watch_job(pb::WatchJobRequest { jid: job.jid })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    within(Duration::from_secs(10), async {
        while let Some(update) = updates.message().await.unwrap() {
            last = update.job;
        }
    })
    .await;
    assert_eq!(last.unwrap().status(), pb::JobStatus::Success);

    let status = server.terminate_within(Duration::from_secs(10)).await;
    assert!(status.success(), "jobs-api exited with {status}");
}

//! The broker against a real RabbitMQ, each test under a queue prefix of its own so tests run in
//! parallel on one server. Set `CONTEXTIQ_TEST_RABBITMQ_URL` (see `scripts/services.sh`) to run
//! them; without it they are skipped with a message (or fail, under
//! `CONTEXTIQ_REQUIRE_SERVICES=1`). The test of an unreachable RabbitMQ needs no
//! server and always runs. The restart test runs a private RabbitMQ node of its own (through
//! `scripts/services.sh` with another port, node name and directory), never the shared one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contextiq_core::generation::broker::{Delivery, JobBroker, JobMessage};
use contextiq_queue_rabbitmq::{RabbitBroker, RabbitOptions};
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use uuid::Uuid;

const RABBITMQ_URL: &str = "CONTEXTIQ_TEST_RABBITMQ_URL";

/// The test server's URL; `None` when no server is configured. Sets up logs if `TEST_LOG` is set.
fn rabbitmq_url(test: &str) -> Option<String> {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::new("info,contextiq_queue_rabbitmq=debug");
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let url = std::env::var(RABBITMQ_URL).ok();
    if url.is_none() {
        skip_unless_required(test, &format!("{RABBITMQ_URL} is not set"));
    }
    url
}

/// Skips a test whose service is not configured, with a message; fails it instead under
/// `CONTEXTIQ_REQUIRE_SERVICES=1`, which `scripts/test.sh` sets, so the suite cannot pass
/// without testing what it is meant to.
fn skip_unless_required(test: &str, why: &str) {
    if std::env::var_os("CONTEXTIQ_REQUIRE_SERVICES").is_some_and(|value| value == "1") {
        panic!("{test}: {why}, and CONTEXTIQ_REQUIRE_SERVICES=1 forbids skipping");
    }
    eprintln!("{test} skipped: {why}");
}

fn options() -> RabbitOptions {
    RabbitOptions { queue_prefix: format!("ciq-test-{}.", Uuid::new_v4()), ..RabbitOptions::default() }
}

fn publish_only(options: &RabbitOptions) -> RabbitOptions {
    RabbitOptions { consume: false, ..options.clone() }
}

fn message(source_type: &str) -> JobMessage {
    let job_id = Uuid::new_v4();
    JobMessage {
        job_id,
        source_type: source_type.to_owned(),
        source_reference: (source_type == "session").then(|| Uuid::new_v4().to_string()),
        scope: BTreeMap::from([("user_id".to_owned(), "u1".to_owned())]),
        config: serde_json::json!({"generate": true}),
        headers: BTreeMap::from([
            ("traceparent".to_owned(), format!("00-{}-00f067aa0ba902b7-01", job_id.simple())),
            ("x-correlation-id".to_owned(), format!("corr-{job_id}")),
        ]),
    }
}

const NOTHING_WITHIN: Duration = Duration::from_secs(1);
const DELIVERY_WITHIN: Duration = Duration::from_secs(10);

async fn next(broker: &RabbitBroker) -> Delivery {
    tokio::time::timeout(DELIVERY_WITHIN, broker.next_delivery())
        .await
        .expect("a delivery in time")
        .expect("next delivery")
}

async fn next_message(broker: &RabbitBroker) -> (JobMessage, Delivery) {
    let delivery = next(broker).await;
    let message = delivery.message.clone().expect("a job message");
    (message, delivery)
}

async fn check_nothing_delivered(broker: &RabbitBroker) {
    if let Ok(delivery) = tokio::time::timeout(NOTHING_WITHIN, broker.next_delivery()).await {
        panic!("unexpected delivery: {:?}", delivery.map(|delivery| delivery.message));
    }
}

/// A plain channel, to look at queues the way RabbitMQ holds them.
async fn raw_channel(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default()).await.expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

/// Messages ready in `queue` (passive declare).
async fn ready(url: &str, queue: &str) -> u32 {
    let (_connection, channel) = raw_channel(url).await;
    let declared = channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable().passive(), FieldTable::default())
        .await
        .unwrap_or_else(|error| panic!("passive declare of {queue}: {error}"));
    declared.message_count()
}

/// Waits (dead-lettering is asynchronous) until `queue` holds `expected` ready messages.
async fn check_ready(url: &str, queue: &str, expected: u32) {
    let start = Instant::now();
    loop {
        let n_ready = ready(url, queue).await;
        if n_ready == expected {
            return;
        }
        // A bound on waiting, not a timing expectation: dead-lettering takes milliseconds.
        assert!(start.elapsed() < Duration::from_secs(60), "{queue}: {n_ready} ready, expected {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes the test's queues from the shared server.
async fn delete_queues(url: &str, options: &RabbitOptions) {
    let (connection, channel) = raw_channel(url).await;
    for queue in ["memory_generation", "memory_consolidation"] {
        for name in [format!("{}{queue}", options.queue_prefix), format!("{}{queue}.dead", options.queue_prefix)] {
            channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await.expect("delete queue");
        }
    }
    connection.close(200, "done".into()).await.unwrap();
}

fn generation_queue(options: &RabbitOptions) -> String {
    format!("{}memory_generation", options.queue_prefix)
}

fn consolidation_queue(options: &RabbitOptions) -> String {
    format!("{}memory_consolidation", options.queue_prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_their_queue_and_come_back_with_their_headers() {
    let Some(url) = rabbitmq_url("messages_reach_their_queue_and_come_back_with_their_headers") else { return };
    let options = options();
    let publisher = RabbitBroker::connect(&url, publish_only(&options)).await.expect("connect publisher");
    let consolidation = message("memories");
    let generation = message("session");
    let events = message("events");
    publisher.publish(&[consolidation.clone(), generation.clone(), events.clone()]).await.expect("publish");
    publisher.publish(&[]).await.expect("publish nothing");

    check_ready(&url, &consolidation_queue(&options), 1).await;
    check_ready(&url, &generation_queue(&options), 2).await;
    assert_eq!(publisher.queue_depth().await.expect("queue depth"), 3);
    assert!(publisher.next_delivery().await.is_err(), "a publish-only broker delivers nothing");

    let consumer = RabbitBroker::connect(&url, options.clone()).await.expect("connect consumer");
    let mut received = BTreeMap::new();
    for _ in 0..3 {
        let (message, delivery) = next_message(&consumer).await;
        delivery.acknowledger.ack().await.expect("ack");
        received.insert(message.job_id, message);
    }
    for sent in [consolidation, generation, events] {
        assert_eq!(received.get(&sent.job_id), Some(&sent));
    }
    check_ready(&url, &consolidation_queue(&options), 0).await;
    assert_eq!(publisher.queue_depth().await.expect("queue depth"), 0);

    consumer.close().await;
    publisher.close().await;
    assert!(publisher.publish(&[message("session")]).await.is_err(), "publish after close");
    assert!(consumer.next_delivery().await.is_err(), "next delivery after close");
    delete_queues(&url, &options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_are_gone() {
    let Some(url) = rabbitmq_url("acknowledged_messages_are_gone") else { return };
    let options = options();
    let broker = RabbitBroker::connect(&url, options.clone()).await.expect("connect");
    let sent = message("session");
    broker.publish(std::slice::from_ref(&sent)).await.expect("publish");
    let (received, delivery) = next_message(&broker).await;
    assert_eq!(received, sent);
    delivery.acknowledger.ack().await.expect("ack");
    broker.close().await;

    let other = RabbitBroker::connect(&url, options.clone()).await.expect("connect again");
    check_nothing_delivered(&other).await;
    other.close().await;
    check_ready(&url, &generation_queue(&options), 0).await;
    delete_queues(&url, &options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_deliveries_come_back_to_another_broker() {
    let Some(url) = rabbitmq_url("unacknowledged_deliveries_come_back_to_another_broker") else { return };
    let options = options();
    let first = RabbitBroker::connect(&url, options.clone()).await.expect("connect");
    let publisher = RabbitBroker::connect(&url, publish_only(&options)).await.expect("connect publisher");
    let sent = message("memories");
    publisher.publish(std::slice::from_ref(&sent)).await.expect("publish");
    let (received, delivery) = next_message(&first).await;
    assert_eq!(received.job_id, sent.job_id);

    first.close().await;
    // Its channel is gone: the ack fails, harmlessly.
    assert!(delivery.acknowledger.ack().await.is_err());

    let second = RabbitBroker::connect(&url, options.clone()).await.expect("connect again");
    let (again, delivery) = next_message(&second).await;
    assert_eq!(again, sent);
    delivery.acknowledger.ack().await.expect("ack");
    check_nothing_delivered(&second).await;
    second.close().await;
    publisher.close().await;
    delete_queues(&url, &options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_messages_move_to_the_dead_letter_queue() {
    let Some(url) = rabbitmq_url("dead_lettered_messages_move_to_the_dead_letter_queue") else { return };
    let options = options();
    let broker = RabbitBroker::connect(&url, options.clone()).await.expect("connect");
    let sent = message("session");
    broker.publish(std::slice::from_ref(&sent)).await.expect("publish");
    let (_, delivery) = next_message(&broker).await;
    delivery.acknowledger.dead_letter().await.expect("dead letter");

    let dead = format!("{}.dead", generation_queue(&options));
    check_ready(&url, &dead, 1).await;
    check_ready(&url, &generation_queue(&options), 0).await;
    check_nothing_delivered(&broker).await;

    // The dead message is the one sent, persistent, with its message id.
    let (_connection, channel) = raw_channel(&url).await;
    let got = channel.basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap();
    let got = got.expect("a dead message");
    let body: JobMessage = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(body.job_id, sent.job_id);
    assert_eq!(got.delivery.properties.delivery_mode(), &Some(2));
    assert_eq!(
        got.delivery.properties.message_id().as_ref().map(|id| id.as_str()),
        Some(sent.job_id.to_string().as_str())
    );
    assert_eq!(got.delivery.properties.content_type().as_ref().map(|id| id.as_str()), Some("application/json"));
    broker.close().await;
    delete_queues(&url, &options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_bodies_are_delivered_as_errors_and_can_be_dead_lettered() {
    let Some(url) = rabbitmq_url("unreadable_bodies_are_delivered_as_errors_and_can_be_dead_lettered") else { return };
    let options = options();
    let broker = RabbitBroker::connect(&url, options.clone()).await.expect("connect");
    let (_connection, channel) = raw_channel(&url).await;
    let queue = consolidation_queue(&options);
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"not a job message",
            BasicProperties::default(),
        )
        .await
        .expect("raw publish");

    let delivery = next(&broker).await;
    let reason = delivery.message.as_ref().expect_err("an unreadable body");
    assert!(reason.contains("not a job message"), "{reason}");
    delivery.acknowledger.dead_letter().await.expect("dead letter");
    check_ready(&url, &format!("{queue}.dead"), 1).await;
    check_ready(&url, &queue, 0).await;
    broker.close().await;
    delete_queues(&url, &options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_bounds_the_unacknowledged_deliveries() {
    let Some(url) = rabbitmq_url("prefetch_bounds_the_unacknowledged_deliveries") else { return };
    let options = RabbitOptions { prefetch: 2, ..options() };
    let broker = RabbitBroker::connect(&url, options.clone()).await.expect("connect");
    let sent: Vec<JobMessage> = (0..5).map(|_| message("session")).collect();
    broker.publish(&sent).await.expect("publish");

    let mut received = BTreeSet::new();
    let mut unacknowledged = Vec::new();
    for _ in 0..2 {
        let (message, delivery) = next_message(&broker).await;
        received.insert(message.job_id);
        unacknowledged.push(delivery);
    }
    check_nothing_delivered(&broker).await;
    while received.len() < sent.len() {
        unacknowledged.remove(0).acknowledger.ack().await.expect("ack");
        let (message, delivery) = next_message(&broker).await;
        received.insert(message.job_id);
        unacknowledged.push(delivery);
    }
    assert_eq!(received, sent.iter().map(|message| message.job_id).collect());
    for delivery in unacknowledged {
        delivery.acknowledger.ack().await.expect("ack");
    }
    check_nothing_delivered(&broker).await;
    broker.close().await;
    delete_queues(&url, &options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_share_one_broker() {
    let Some(url) = rabbitmq_url("concurrent_publishers_share_one_broker") else { return };
    let options = options();
    let broker = Arc::new(RabbitBroker::connect(&url, publish_only(&options)).await.expect("connect"));
    let mut tasks = tokio::task::JoinSet::new();
    for task_idx in 0..8 {
        let broker = broker.clone();
        tasks.spawn(async move {
            for _ in 0..10 {
                let source_type = if task_idx % 2 == 0 { "memories" } else { "events" };
                broker.publish(&[message(source_type), message(source_type)]).await.expect("publish");
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
    assert_eq!(broker.queue_depth().await.expect("queue depth"), 160);
    check_ready(&url, &consolidation_queue(&options), 80).await;
    broker.close().await;
    delete_queues(&url, &options).await;
}

#[tokio::test]
async fn an_unreachable_rabbitmq_fails_the_connection_after_the_attempts() {
    let options = RabbitOptions { connection_attempts: 3, ..options() };
    let start = Instant::now();
    let Err(error) = RabbitBroker::connect("amqp://guest:guest@127.0.0.1:1/%2f", options).await else {
        panic!("connected to nothing");
    };
    let error = error.to_string();
    assert!(error.contains("127.0.0.1:1 unreachable after 3 attempts"), "{error}");
    assert!(!error.contains("guest:guest"), "the error shows the credentials: {error}");
    // Backoff between the attempts: 500 ms, then 1 s (sleeps, so a lower bound only).
    assert!(start.elapsed() >= Duration::from_millis(1500), "{:?}", start.elapsed());

    let Err(error) = RabbitBroker::connect("not a url", RabbitOptions::default()).await else { panic!("bad URL") };
    assert!(error.to_string().contains("invalid RabbitMQ URL"), "{error}");
}

/// A private RabbitMQ node, started and stopped with `scripts/services.sh`; stopped on drop.
struct PrivateNode {
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateNode {
    fn start() -> PrivateNode {
        // AMQP on `port`, Erlang distribution on `port + 1`: both must be free.
        let port = loop {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let node = PrivateNode { port, dir: tempfile::tempdir().unwrap() };
        node.services("start-rabbitmq");
        node
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn services(&self, command: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/services.sh");
        let status = Command::new(script)
            .arg(command)
            .env("CONTEXTIQ_TEST_RABBITMQ_PORT", self.port.to_string())
            .env("CONTEXTIQ_TEST_RABBITMQ_DIST_PORT", (self.port + 1).to_string())
            .env("CONTEXTIQ_TEST_RABBITMQ_NODE", format!("ciq-test-{}@localhost", self.port))
            .env("CONTEXTIQ_TEST_RABBITMQ_DIR", self.dir.path())
            .status()
            .expect("run scripts/services.sh");
        assert!(status.success(), "scripts/services.sh {command}: {status}");
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        self.services("stop-rabbitmq");
    }
}

/// Restarts RabbitMQ (a private node, about 15 s) under a consuming and a publishing broker: no
/// message is lost, the unacknowledged one comes back, and both brokers work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_reconnect_after_a_rabbitmq_restart() {
    if rabbitmq_url("brokers_reconnect_after_a_rabbitmq_restart").is_none() {
        return;
    }
    let node = tokio::task::spawn_blocking(PrivateNode::start).await.unwrap();
    let url = node.url();
    let options = options();
    let consumer = RabbitBroker::connect(&url, options.clone()).await.expect("connect consumer");
    let publisher = RabbitBroker::connect(&url, publish_only(&options)).await.expect("connect publisher");
    let before = message("session");
    publisher.publish(std::slice::from_ref(&before)).await.expect("publish");
    let (received, unacknowledged) = next_message(&consumer).await;
    assert_eq!(received, before);

    let node = tokio::task::spawn_blocking(move || {
        node.services("stop-rabbitmq");
        node
    })
    .await
    .unwrap();
    assert!(publisher.queue_depth().await.is_err(), "queue depth while RabbitMQ is down");
    let node = tokio::task::spawn_blocking(move || {
        node.services("start-rabbitmq");
        node
    })
    .await
    .unwrap();

    // The brokers may still be waiting to reconnect: publish waits for them.
    let after = message("memories");
    publisher.publish(std::slice::from_ref(&after)).await.expect("publish after the restart");
    assert!(unacknowledged.acknowledger.ack().await.is_err(), "ack on the lost channel");
    let mut received = BTreeMap::new();
    for _ in 0..2 {
        let (message, delivery) = next_message(&consumer).await;
        delivery.acknowledger.ack().await.expect("ack after the restart");
        received.insert(message.job_id, message);
    }
    assert_eq!(received, BTreeMap::from([(before.job_id, before), (after.job_id, after)]));
    check_nothing_delivered(&consumer).await;
    assert_eq!(publisher.queue_depth().await.expect("queue depth"), 0);

    consumer.close().await;
    publisher.close().await;
    tokio::task::spawn_blocking(move || drop(node)).await.unwrap();
}

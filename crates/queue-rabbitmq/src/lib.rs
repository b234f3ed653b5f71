//! RabbitMQ behind the job broker of the distributed deployment: [`RabbitBroker`] implements
//! `contextiq_core::generation::broker::JobBroker` with persistent messages, publisher confirms,
//! manual acknowledgements and a dead-letter queue per queue.
//!
//! Topology, declared (idempotently) at every connection, each name under
//! [`RabbitOptions::queue_prefix`]:
//!
//! ```text
//! memory_generation          durable; rejected messages go to memory_generation.dead
//! memory_generation.dead     durable dead-letter queue
//! memory_consolidation       durable; rejected messages go to memory_consolidation.dead
//! memory_consolidation.dead  durable dead-letter queue
//! ```
//!
//! Messages go through the default exchange, routed by queue name. One background task owns the
//! connection: when it is lost it reconnects with capped exponential backoff, declares the
//! topology again and restarts the consumers. Meanwhile `publish` waits for it (a bounded time),
//! deliveries of the lost channel can no longer be settled (RabbitMQ delivers them again), and
//! `next_delivery` waits for the new consumers.
//!
//! **Architecture Invariant:** this crate knows job messages, not jobs: the job table stays the
//! truth, and a worker claims a job in the store whatever the message says.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contextiq_core::generation::broker::{Acknowledger, BrokerError, Delivery, JobBroker, JobMessage, QueueName};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, Event};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How the broker uses RabbitMQ.
#[derive(Debug, Clone)]
pub struct RabbitOptions {
    /// Unacknowledged deliveries per queue consumer (the seed's `WORKER_PREFETCH_COUNT`).
    pub prefetch: u16,
    /// Heartbeat interval proposed to RabbitMQ, 0 to disable (the seed's `RABBITMQ_HEARTBEAT`).
    pub heartbeat_seconds: u16,
    /// Connection attempts at startup before [`RabbitBroker::connect`] gives up (the seed's
    /// `RABBITMQ_CONNECTION_ATTEMPTS`). After startup the broker reconnects without limit.
    pub connection_attempts: u32,
    /// Prefix of every queue name, separator included, so deployments (or tests) can share one
    /// RabbitMQ.
    pub queue_prefix: String,
    /// Whether this process consumes; a process that only publishes (the API role) sets `false`.
    pub consume: bool,
}

impl Default for RabbitOptions {
    fn default() -> RabbitOptions {
        RabbitOptions {
            prefetch: 10,
            heartbeat_seconds: 60,
            connection_attempts: 3,
            queue_prefix: String::new(),
            consume: true,
        }
    }
}

/// Publishes job messages to RabbitMQ and, if it consumes, hands RabbitMQ's deliveries to this
/// process's workers.
pub struct RabbitBroker {
    link: watch::Receiver<Link>,
    queues: Queues,
    /// `None` when the broker does not consume.
    deliveries: Option<Mutex<mpsc::UnboundedReceiver<Incoming>>>,
    /// Set to `true` (or dropped) to stop the supervisor.
    shutdown: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl RabbitBroker {
    /// Connects, declares the topology and, if `options.consume`, starts consuming both queues.
    /// Fails if RabbitMQ cannot be reached in `options.connection_attempts` attempts.
    pub async fn connect(url: &str, options: RabbitOptions) -> Result<RabbitBroker, BrokerError> {
        let config = Config::new(url, &options)?;
        let n_attempts = options.connection_attempts.max(1);
        let mut delay = STARTUP_BACKOFF;
        let mut attempt = 1;
        let session = loop {
            match Session::open(&config).await {
                Ok(session) => break session,
                Err(error) if attempt < n_attempts => {
                    tracing::warn!(
                        %error,
                        attempt,
                        ?delay,
                        address = config.address,
                        "RabbitMQ not reachable yet, trying again"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                Err(error) => {
                    return Err(BrokerError(format!(
                        "RabbitMQ at {} unreachable after {n_attempts} attempts: {}",
                        config.address, error.0
                    )));
                }
            }
        };

        let (link_tx, link) = watch::channel(Link::Down);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (deliveries_tx, deliveries) = if options.consume {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(Mutex::new(rx)))
        } else {
            (None, None)
        };
        let queues = config.queues.clone();
        let supervisor = Supervisor { config, link: link_tx, deliveries: deliveries_tx, shutdown: shutdown_rx };
        let supervisor = tokio::spawn(supervisor.run(session));
        Ok(RabbitBroker { link, queues, deliveries, shutdown, supervisor: Mutex::new(Some(supervisor)) })
    }

    /// Closes the connection: deliveries not yet acknowledged go back to their queue, `publish`
    /// fails from now on and `next_delivery` once no delivered message is left to hand out.
    pub async fn close(&self) {
        self.shutdown.send_replace(true);
        let supervisor = self.supervisor.lock().await.take();
        if let Some(supervisor) = supervisor
            && let Err(error) = supervisor.await
        {
            tracing::error!(%error, "RabbitMQ supervisor failed");
        }
    }

    /// Messages ready (not delivered) in both main queues, for a metric. Fails at once while
    /// disconnected.
    pub async fn queue_depth(&self) -> Result<u64, BrokerError> {
        let Link::Up(session) = self.link.borrow().clone() else {
            return Err(BrokerError("RabbitMQ queue depth: not connected".to_owned()));
        };
        bounded("queue depth", async {
            // A channel of its own: a failed passive declare closes its channel.
            let channel = session.connection.create_channel().await.map_err(|error| rabbit_error("channel", error))?;
            let mut depth = 0;
            for queue in QueueName::ALL {
                let name = self.queues.name(queue);
                let declared = channel
                    .queue_declare(name.into(), QueueDeclareOptions::durable().passive(), FieldTable::default())
                    .await
                    .map_err(|error| rabbit_error(&format!("queue {name}"), error))?;
                depth += u64::from(declared.message_count());
            }
            let _ = channel.close(REPLY_SUCCESS, "queue depth read".into()).await;
            Ok(depth)
        })
        .await
    }

    /// The current session, waiting until `deadline` for one.
    async fn session(&self, deadline: Instant) -> Result<Arc<Session>, BrokerError> {
        let mut link = self.link.clone();
        let waited = tokio::time::timeout_at(deadline, link.wait_for(|link| !matches!(link, Link::Down))).await;
        match waited {
            Ok(Ok(link)) => match &*link {
                Link::Up(session) => Ok(session.clone()),
                Link::Down | Link::Closed => Err(closed()),
            },
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(BrokerError(format!("RabbitMQ not connected within {PUBLISH_TIMEOUT:?}"))),
        }
    }

    async fn publish_on(&self, session: &Session, messages: &[JobMessage]) -> Result<(), BrokerError> {
        let mut confirms = Vec::with_capacity(messages.len());
        for message in messages {
            let queue = message.queue();
            let body = serde_json::to_vec(message)
                .map_err(|error| BrokerError(format!("job message {}: {error}", message.job_id)))?;
            let mut headers = FieldTable::default();
            for (key, value) in &message.headers {
                headers.insert(key.as_str().into(), AMQPValue::LongString(LongString::from(value.as_str())));
            }
            let properties = BasicProperties::default()
                .with_delivery_mode(PERSISTENT)
                .with_content_type("application/json".into())
                .with_message_id(message.job_id.to_string().into())
                .with_headers(headers);
            // Mandatory: a message no queue takes comes back, and counts as not published.
            let confirm = session
                .publisher
                .basic_publish(
                    ShortString::default(),
                    self.queues.name(queue).into(),
                    BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                    &body,
                    properties,
                )
                .await
                .map_err(|error| rabbit_error("publish", error))?;
            confirms.push((queue, message.job_id, confirm));
        }
        let mut failure = None;
        for (queue, job_id, confirm) in confirms {
            let outcome = match confirm.await {
                Ok(Confirmation::Ack(None)) => {
                    metrics::counter!("queue_messages_published_total", "queue" => queue.as_str()).increment(1);
                    continue;
                }
                Ok(Confirmation::Ack(Some(returned))) => {
                    format!("message for job {job_id} returned: {}", returned.reply_text)
                }
                Ok(Confirmation::Nack(_)) => format!("message for job {job_id} refused (nack)"),
                Ok(Confirmation::NotRequested) => format!("message for job {job_id} not confirmed"),
                Err(error) => rabbit_error(&format!("confirmation of job {job_id}"), error).0,
            };
            // Keep awaiting the others: their outcome is known sooner or later either way.
            failure.get_or_insert(outcome);
        }
        match failure {
            None => Ok(()),
            Some(failure) => Err(BrokerError(format!("RabbitMQ publish: {failure}"))),
        }
    }
}

#[async_trait]
impl JobBroker for RabbitBroker {
    async fn publish(&self, messages: &[JobMessage]) -> Result<(), BrokerError> {
        if messages.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        loop {
            let session = self.session(deadline).await?;
            let published = tokio::time::timeout_at(deadline, self.publish_on(&session, messages)).await;
            let error = match published {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => error,
                Err(_) => {
                    return Err(BrokerError(format!("RabbitMQ publish: not confirmed within {PUBLISH_TIMEOUT:?}")));
                }
            };
            // Lost the connection under way: publish everything again on the next one (a
            // duplicate message is harmless).
            if session.healthy() || Instant::now() >= deadline {
                return Err(error);
            }
            tracing::debug!(%error, "RabbitMQ publish interrupted, waiting for the next connection");
            let mut link = self.link.clone();
            let replaced = link.wait_for(|link| !matches!(link, Link::Up(current) if Arc::ptr_eq(current, &session)));
            if tokio::time::timeout_at(deadline, replaced).await.is_err() {
                return Err(error);
            }
        }
    }

    async fn next_delivery(&self) -> Result<Delivery, BrokerError> {
        let Some(deliveries) = &self.deliveries else {
            return Err(BrokerError("RabbitMQ broker opened without consuming".to_owned()));
        };
        let mut deliveries = deliveries.lock().await;
        loop {
            let Some(incoming) = deliveries.recv().await else { return Err(closed()) };
            // A delivery of a lost channel can no longer be settled, and RabbitMQ delivers it
            // again: skip it.
            if incoming.acker.usable() {
                return Ok(Delivery {
                    message: incoming.message,
                    acknowledger: Box::new(RabbitAcknowledger(incoming.acker)),
                });
            }
        }
    }
}

/// Settles one delivery on the channel it came from.
struct RabbitAcknowledger(Acker);

#[async_trait]
impl Acknowledger for RabbitAcknowledger {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        settled("ack", bounded("ack", async { Ok(self.0.ack(BasicAckOptions::default()).await) }).await?)
    }

    async fn dead_letter(self: Box<Self>) -> Result<(), BrokerError> {
        // The queue's dead-letter exchange moves a message rejected without requeue to `.dead`.
        let rejected = bounded("dead-letter", async { Ok(self.0.reject(BasicRejectOptions { requeue: false }).await) });
        settled("dead-letter", rejected.await?)
    }
}

fn settled(operation: &str, result: lapin::Result<bool>) -> Result<(), BrokerError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(BrokerError(format!(
            "RabbitMQ {operation}: the delivery's channel is closed; RabbitMQ delivers the message again"
        ))),
        Err(error) => Err(rabbit_error(operation, error)),
    }
}

/// Startup attempts wait this long after the first failure, doubling each time.
const STARTUP_BACKOFF: Duration = Duration::from_millis(500);
/// Reconnections wait this long after a loss, doubling after each failed attempt.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bound on connecting, declaring the topology and starting the consumers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on `publish`, waiting for a connection included.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the other operations: acks, queue depth, closing.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the supervisor checks that the connection and its channels are open.
const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
const PERSISTENT: u8 = 2;
const REPLY_SUCCESS: u16 = 200;

/// The state of the connection, as the supervisor publishes it.
#[derive(Clone)]
enum Link {
    /// Connecting or reconnecting.
    Down,
    Up(Arc<Session>),
    /// Closed for good.
    Closed,
}

/// A delivery on its way from a consumer to `next_delivery`.
struct Incoming {
    message: Result<JobMessage, String>,
    acker: Acker,
}

/// The prefixed queue names.
#[derive(Clone)]
struct Queues {
    generation: String,
    consolidation: String,
}

impl Queues {
    fn name(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::MemoryGeneration => &self.generation,
            QueueName::MemoryConsolidation => &self.consolidation,
        }
    }
}

/// What every (re)connection needs.
struct Config {
    uri: AMQPUri,
    /// Host and port, for messages: the URL may hold a password.
    address: String,
    queues: Queues,
    prefetch: u16,
    consume: bool,
}

impl Config {
    fn new(url: &str, options: &RabbitOptions) -> Result<Config, BrokerError> {
        let mut uri: AMQPUri = url.parse().map_err(|error| BrokerError(format!("invalid RabbitMQ URL: {error}")))?;
        uri.query.heartbeat = Some(options.heartbeat_seconds);
        uri.query.connection_timeout.get_or_insert(CONNECT_TIMEOUT.as_millis() as u64);
        let address = format!("{}:{}", uri.authority.host, uri.authority.port);
        let prefix = &options.queue_prefix;
        let queues = Queues {
            generation: format!("{prefix}{}", QueueName::MemoryGeneration.as_str()),
            consolidation: format!("{prefix}{}", QueueName::MemoryConsolidation.as_str()),
        };
        Ok(Config { uri, address, queues, prefetch: options.prefetch, consume: options.consume })
    }
}

/// One connection with its channels.
struct Session {
    connection: Connection,
    /// In confirm mode.
    publisher: Channel,
    /// With a consumer per queue; `None` when the broker does not consume.
    consumer: Option<Channel>,
}

impl Session {
    /// Connects, declares the topology, opens the channels; returns the consumers to read.
    async fn open(config: &Config) -> Result<(Session, Vec<Consumer>), BrokerError> {
        let properties = ConnectionProperties::default().with_connection_name("contextiq".into());
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(config.uri.clone(), properties))
            .await
            .map_err(|_| BrokerError(format!("RabbitMQ connection: not established within {CONNECT_TIMEOUT:?}")))?
            .map_err(|error| rabbit_error("connection", error))?;
        let set_up = tokio::time::timeout(CONNECT_TIMEOUT, Session::set_up(&connection, config)).await;
        match set_up {
            Ok(Ok((publisher, consumer, consumers))) => Ok((Session { connection, publisher, consumer }, consumers)),
            Ok(Err(error)) => {
                close_connection(&connection).await;
                Err(error)
            }
            Err(_) => {
                close_connection(&connection).await;
                Err(BrokerError(format!("RabbitMQ topology: not declared within {CONNECT_TIMEOUT:?}")))
            }
        }
    }

    async fn set_up(
        connection: &Connection,
        config: &Config,
    ) -> Result<(Channel, Option<Channel>, Vec<Consumer>), BrokerError> {
        let publisher = connection.create_channel().await.map_err(|error| rabbit_error("channel", error))?;
        for queue in QueueName::ALL {
            let name = config.queues.name(queue);
            let dead = format!("{name}.dead");
            publisher
                .queue_declare(dead.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default())
                .await
                .map_err(|error| rabbit_error(&format!("declaring queue {dead}"), error))?;
            let mut arguments = FieldTable::default();
            arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
            arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dead.as_str().into()));
            publisher
                .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
                .await
                .map_err(|error| rabbit_error(&format!("declaring queue {name}"), error))?;
        }
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|error| rabbit_error("confirm mode", error))?;
        if !config.consume {
            return Ok((publisher, None, Vec::new()));
        }

        let channel = connection.create_channel().await.map_err(|error| rabbit_error("channel", error))?;
        // Per consumer: each queue's consumer holds at most `prefetch` unacknowledged deliveries.
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(|error| rabbit_error("qos", error))?;
        let mut consumers = Vec::with_capacity(QueueName::ALL.len());
        for queue in QueueName::ALL {
            let name = config.queues.name(queue);
            let consumer = channel
                .basic_consume(
                    name.into(),
                    ShortString::default(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|error| rabbit_error(&format!("consuming {name}"), error))?;
            consumers.push(consumer);
        }
        Ok((publisher, Some(channel), consumers))
    }

    fn healthy(&self) -> bool {
        self.connection.status().connected()
            && self.publisher.status().connected()
            && self.consumer.as_ref().is_none_or(|channel| channel.status().connected())
    }

    /// Closes gracefully: RabbitMQ requeues the deliveries not acknowledged.
    async fn close(&self) {
        if let Some(channel) = &self.consumer {
            let _ = tokio::time::timeout(OPERATION_TIMEOUT, channel.close(REPLY_SUCCESS, "closing".into())).await;
        }
        close_connection(&self.connection).await;
    }
}

async fn close_connection(connection: &Connection) {
    let _ = tokio::time::timeout(OPERATION_TIMEOUT, connection.close(REPLY_SUCCESS, "closing".into())).await;
}

/// The background task that owns the connection.
struct Supervisor {
    config: Config,
    link: watch::Sender<Link>,
    deliveries: Option<mpsc::UnboundedSender<Incoming>>,
    shutdown: watch::Receiver<bool>,
}

impl Supervisor {
    async fn run(mut self, opened: (Session, Vec<Consumer>)) {
        let mut opened = opened;
        loop {
            let (session, consumers) = opened;
            let session = Arc::new(session);
            let Some(reason) = self.watch(&session, consumers).await else {
                self.link.send_replace(Link::Closed);
                session.close().await;
                return;
            };
            self.link.send_replace(Link::Down);
            tracing::warn!(reason, address = self.config.address, "RabbitMQ connection lost, reconnecting");
            // Releases what is left: RabbitMQ requeues the unacknowledged deliveries.
            session.close().await;
            drop(session);

            let Some(reopened) = self.reconnect().await else {
                self.link.send_replace(Link::Closed);
                return;
            };
            opened = reopened;
            metrics::counter!("rabbitmq_reconnects_total").increment(1);
            tracing::warn!(address = self.config.address, "RabbitMQ reconnected");
        }
    }

    /// Serves `session` until it fails (returns why) or the broker closes (returns `None`).
    async fn watch(&mut self, session: &Arc<Session>, consumers: Vec<Consumer>) -> Option<String> {
        let mut events = pin!(session.connection.events_listener());
        let mut forwarders = JoinSet::new();
        if let Some(deliveries) = &self.deliveries {
            for consumer in consumers {
                forwarders.spawn(forward(consumer, deliveries.clone()));
            }
        }
        self.link.send_replace(Link::Up(session.clone()));
        let mut health = tokio::time::interval(HEALTH_INTERVAL);
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => return None,
                Some(ended) = forwarders.join_next() => {
                    return Some(ended.unwrap_or_else(|error| format!("consumer task failed: {error}")));
                }
                event = events.next() => match event {
                    Some(Event::Error(error)) => return Some(error.to_string()),
                    Some(_) => {}
                    None => return Some("connection events ended".to_owned()),
                },
                _ = health.tick() => {
                    if !session.healthy() {
                        return Some("connection or channel closed".to_owned());
                    }
                }
            }
        }
    }

    /// Opens a new session with capped exponential backoff; `None` if the broker closes first.
    async fn reconnect(&mut self) -> Option<(Session, Vec<Consumer>)> {
        let mut delay = RECONNECT_BACKOFF;
        let mut attempt = 1u32;
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => return None,
                () = tokio::time::sleep(delay) => {}
            }
            match Session::open(&self.config).await {
                Ok(opened) => return Some(opened),
                Err(error) => {
                    tracing::warn!(%error, attempt, address = self.config.address, "RabbitMQ reconnection failed");
                }
            }
            delay = (delay * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }
}

/// Hands a consumer's deliveries to `next_delivery`; returns why the consumer ended.
async fn forward(mut consumer: Consumer, deliveries: mpsc::UnboundedSender<Incoming>) -> String {
    while let Some(delivery) = consumer.next().await {
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(error) => return format!("consumer of {}: {error}", consumer.queue()),
        };
        let message = read_message(&delivery);
        if deliveries.send(Incoming { message, acker: delivery.acker }).is_err() {
            return "broker dropped".to_owned();
        }
    }
    format!("consumer of {} cancelled", consumer.queue())
}

/// The job message of a delivery, with its string headers; or why it cannot be read.
fn read_message(delivery: &lapin::message::Delivery) -> Result<JobMessage, String> {
    let mut message: JobMessage = serde_json::from_slice(&delivery.data).map_err(|error| {
        format!("body of message {:?} is not a job message: {error}", delivery.properties.message_id())
    })?;
    if let Some(headers) = delivery.properties.headers() {
        for (key, value) in headers.inner() {
            let value = match value {
                AMQPValue::LongString(value) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
                AMQPValue::ShortString(value) => value.as_str().to_owned(),
                _ => continue,
            };
            message.headers.insert(key.as_str().to_owned(), value);
        }
    }
    Ok(message)
}

async fn bounded<T>(operation: &str, future: impl Future<Output = Result<T, BrokerError>>) -> Result<T, BrokerError> {
    tokio::time::timeout(OPERATION_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| Err(BrokerError(format!("RabbitMQ {operation}: no reply within {OPERATION_TIMEOUT:?}"))))
}

fn rabbit_error(operation: &str, error: lapin::Error) -> BrokerError {
    BrokerError(format!("RabbitMQ {operation}: {error}"))
}

fn closed() -> BrokerError {
    BrokerError("RabbitMQ broker closed".to_owned())
}

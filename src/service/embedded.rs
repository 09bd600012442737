//! The embedded broker: librdkafka's in-process mock cluster, for `run`
//! with no brokers configured, `demo` and tests. The mock cluster is not
//! `Send`, so it lives on its own thread until the handle is dropped.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::Context;
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaRespErr;

/// Partitions of each topic of the embedded broker.
pub const PARTITIONS: i32 = 4;

pub struct EmbeddedBroker {
    bootstrap: String,
    /// Dropped to stop the cluster.
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

/// A fault for the cluster's thread to make (or mend), with where to
/// answer whether it did.
type Command = (Fault, mpsc::Sender<anyhow::Result<()>>);

enum Fault {
    /// The broker down (`false`) or up.
    Reachable(bool),
    /// The error the broker gives for a topic in metadata requests.
    TopicError(String, RDKafkaRespErr),
}

/// The id of the cluster's one broker.
const BROKER_ID: i32 = 1;

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster with `topics` created, each with
    /// `partitions` partitions. It listens on 127.0.0.1 only.
    pub fn start(topics: &[String], partitions: i32) -> anyhow::Result<EmbeddedBroker> {
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<String>>();
        let (commands_tx, commands_rx) = mpsc::channel::<Command>();
        let topics = topics.to_vec();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                for t in &topics {
                    if let Err(e) = cluster.create_topic(t, partitions, 1) {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("creating topic {t}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Until the handle is dropped.
                for (fault, answer) in commands_rx {
                    let done = match fault {
                        Fault::Reachable(true) => cluster.broker_up(BROKER_ID),
                        Fault::Reachable(false) => cluster.broker_down(BROKER_ID),
                        Fault::TopicError(topic, e) => cluster.topic_error(&topic, e),
                    };
                    let _ = answer.send(done.context("making a fault"));
                }
            })
            .context("starting the embedded broker thread")?;
        let bootstrap = ready_rx
            .recv()
            .context("the embedded broker thread ended")??;
        Ok(EmbeddedBroker {
            bootstrap,
            commands: Some(commands_tx),
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Takes the broker down (its connections are closed and new ones
    /// refused) or brings it back, as in a broker outage.
    pub fn set_reachable(&self, up: bool) -> anyhow::Result<()> {
        self.make(Fault::Reachable(up))
    }

    /// Has the broker answer metadata requests for `topic` with `error`
    /// (`NoError` mends it): a topic a producer may not write to, say.
    pub fn set_topic_error(&self, topic: &str, error: RDKafkaRespErr) -> anyhow::Result<()> {
        self.make(Fault::TopicError(topic.to_string(), error))
    }

    fn make(&self, fault: Fault) -> anyhow::Result<()> {
        let (answer_tx, answer_rx) = mpsc::channel();
        self.commands
            .as_ref()
            .context("the embedded broker is stopped")?
            .send((fault, answer_tx))
            .ok()
            .context("the embedded broker thread ended")?;
        answer_rx
            .recv()
            .context("the embedded broker thread ended")?
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

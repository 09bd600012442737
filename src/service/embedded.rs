//! The embedded broker: librdkafka's in-process mock cluster, for `run`
//! with no brokers configured, `demo` and tests. The mock cluster is not
//! `Send`, so it lives on its own thread until the handle is dropped.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::Context;
use rdkafka::mocking::MockCluster;

/// Partitions of each topic of the embedded broker.
pub const PARTITIONS: i32 = 4;

pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster with `topics` created, each with
    /// `partitions` partitions. It listens on 127.0.0.1 only.
    pub fn start(topics: &[String], partitions: i32) -> anyhow::Result<EmbeddedBroker> {
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
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
                // Until the handle is dropped (or sends a stop).
                let _ = stop_rx.recv();
            })
            .context("starting the embedded broker thread")?;
        let bootstrap = ready_rx
            .recv()
            .context("the embedded broker thread ended")??;
        Ok(EmbeddedBroker {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

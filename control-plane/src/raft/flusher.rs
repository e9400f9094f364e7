//! Node-wide group commit. Every group's log writes go to RocksDB's WAL without a sync; their
//! durability callbacks queue here, and one thread makes them durable with a single
//! `fsync` of the WAL per round, however many groups and entries the round covers.

use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use rocksdb::DB;

/// Something to run once everything written before it is durable.
pub type Durable = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Handle to the flusher thread. It also carries the node-wide byte count of the log
/// stores' entry caches (one budget per node, shared by every group).
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::SyncSender<Durable>,
    cache_bytes: Arc<AtomicUsize>,
}

impl Flusher {
    /// Starts the flusher thread for `db`. The queue is bounded: producers wait when it is
    /// full, which back-pressures Raft instead of growing memory.
    pub fn start(db: &Arc<DB>) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Durable>(65_536);
        // A weak handle: the flusher never keeps a closed node's database open.
        let db = Arc::downgrade(db);
        std::thread::Builder::new()
            .name("spate-wal-sync".into())
            .spawn(move || run(db, rx))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the WAL flusher thread"));
        Self {
            tx,
            cache_bytes: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The node-wide count of bytes held by log entry caches.
    pub fn cache_bytes(&self) -> Arc<AtomicUsize> {
        self.cache_bytes.clone()
    }

    /// Runs `done` after the next WAL sync that follows this call.
    pub fn after_sync(&self, done: Durable) {
        if let Err(mpsc::SendError(done)) = self.tx.send(done) {
            done(Err(std::io::Error::other("WAL flusher stopped")));
        }
    }

    /// Waits until everything written so far is durable.
    pub async fn sync(&self) -> std::io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.after_sync(Box::new(move |res| {
            let _ = tx.send(res);
        }));
        rx.await
            .map_err(|_| std::io::Error::other("WAL flusher dropped a sync request"))?
    }
}

fn run(db: Weak<DB>, rx: mpsc::Receiver<Durable>) {
    let mut round: Vec<Durable> = Vec::with_capacity(1024);
    while let Ok(first) = rx.recv() {
        round.push(first);
        while let Ok(more) = rx.try_recv() {
            round.push(more);
            if round.len() >= 8192 {
                break;
            }
        }
        let res = match db.upgrade() {
            Some(db) => db
                .flush_wal(true)
                .map_err(|e| std::io::Error::other(e.to_string())),
            None => Err(std::io::Error::other("database closed")),
        };
        for done in round.drain(..) {
            done(
                res.as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
        }
    }
}

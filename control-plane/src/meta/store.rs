//! openraft adapter of the metadata state machine. The whole image (small: streams and shard
//! maps) is written to `meta_sm` after every applied batch, in one RocksDB write with the
//! applied log id and membership, and published on a watch channel as the node's shard map.

use std::io;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::state::{MetaResponse, MetaState};
use super::MetaTypeConfig as C;
use crate::raft::codec::{decode_io, encode_io};
use crate::raft::db::CF_META_SM;
use crate::raft::{io_err, SnapshotData};

/// Largest metadata snapshot accepted (the metadata state is small).
const MAX_META_SNAPSHOT: usize = 256 << 20;

const KEY_IMAGE: &[u8] = b"image";

/// What the node sees of the metadata: the applied state and the index it reflects.
#[derive(Debug, Clone, Default)]
pub struct MetaView {
    pub state: Arc<MetaState>,
    /// Log index of the last applied entry (0 before any).
    pub applied_index: u64,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct Image {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    state: MetaState,
}

/// The metadata state machine store.
#[derive(Clone)]
pub struct MetaStore {
    db: Arc<DB>,
    image: Arc<tokio::sync::Mutex<Image>>,
    view_tx: Arc<watch::Sender<MetaView>>,
}

impl MetaStore {
    /// Loads the persisted image (if any) and returns the store and a receiver of its views.
    pub fn open(db: Arc<DB>) -> io::Result<(Self, watch::Receiver<MetaView>)> {
        let cf = db
            .cf_handle(CF_META_SM)
            .ok_or_else(|| io_err("missing cf meta_sm"))?;
        let image: Image = match db.get_cf(cf, KEY_IMAGE).map_err(io_err)? {
            Some(bytes) => decode_io(&bytes)?,
            None => Image::default(),
        };
        let view = MetaView {
            state: Arc::new(image.state.clone()),
            applied_index: image.last_applied.as_ref().map(|l| l.index()).unwrap_or(0),
        };
        let (tx, rx) = watch::channel(view);
        Ok((
            Self {
                db,
                image: Arc::new(tokio::sync::Mutex::new(image)),
                view_tx: Arc::new(tx),
            },
            rx,
        ))
    }

    fn persist(&self, image: &Image) -> io::Result<()> {
        let cf = self
            .db
            .cf_handle(CF_META_SM)
            .ok_or_else(|| io_err("missing cf meta_sm"))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, KEY_IMAGE, encode_io(image)?);
        self.db.write(batch).map_err(io_err)
    }

    fn publish(&self, image: &Image) {
        let view = MetaView {
            state: Arc::new(image.state.clone()),
            applied_index: image.last_applied.as_ref().map(|l| l.index()).unwrap_or(0),
        };
        self.view_tx.send_replace(view);
    }

    fn snapshot_of(image: &Image) -> io::Result<SnapshotOf<C, SnapshotData>> {
        let meta = SnapshotMetaOf::<C> {
            last_log_id: image.last_applied,
            last_membership: image.membership.clone(),
        };
        Ok(SnapshotOf::<C, SnapshotData> {
            meta,
            snapshot: SnapshotData::Bytes(encode_io(&image.state)?),
        })
    }
}

impl RaftSnapshotBuilder<C> for MetaStore {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotData>, io::Error> {
        let image = self.image.lock().await;
        Self::snapshot_of(&image)
    }
}

impl RaftStateMachine<C> for MetaStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let image = self.image.lock().await;
        Ok((image.last_applied, image.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let mut image = self.image.lock().await;
        let mut responses = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            image.last_applied = Some(entry.log_id());
            let resp = match &entry.payload {
                EntryPayload::Blank => MetaResponse::Done,
                EntryPayload::Normal(cmd) => image.state.apply(cmd),
                EntryPayload::Membership(m) => {
                    image.membership =
                        StoredMembershipOf::<C>::new(Some(entry.log_id()), m.clone());
                    MetaResponse::Done
                }
            };
            if let Some(r) = responder {
                responses.push((r, resp));
            }
        }
        self.persist(&image)?;
        self.publish(&image);
        drop(image);
        for (r, resp) in responses {
            r.send(resp);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let state: MetaState = decode_io(&snapshot.into_bytes(MAX_META_SNAPSHOT).await?)?;
        let mut image = self.image.lock().await;
        *image = Image {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state,
        };
        self.persist(&image)?;
        self.publish(&image);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, SnapshotData>>, io::Error> {
        let image = self.image.lock().await;
        if image.last_applied.is_none() {
            return Ok(None);
        }
        Ok(Some(Self::snapshot_of(&image)?))
    }
}

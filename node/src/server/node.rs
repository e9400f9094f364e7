//! Starts one Spate node: its RocksDB and group-commit flusher, the peer gRPC server, its
//! identity (`meta::replace`: a node on an empty disk may replace a lost one), the
//! metadata group (initialised once by the lowest-id peer; a node outside `cluster.peers`
//! joins it as a learner), the node's self-registration, the shard manager following the
//! shard map, the control loops, the Kinesis API, the admin endpoints and the drain switch.
//! Stops them in reverse order on shutdown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use rand::RngCore;
use spate_control_plane::meta::state::{ClusterSecrets, NodeInfo};
use spate_control_plane::meta::{
    membership, replace, MetaCommand, MetaHandle, MetaStore, MetaTypeConfig,
};
use spate_control_plane::raft::flusher::Flusher;
use spate_control_plane::raft::identity::LocalIdentity;
use spate_control_plane::raft::log_store::GroupLogStore;
use spate_control_plane::raft::network::{GroupNetworkFactory, PeerChannels};
use spate_control_plane::raft::registry::{GroupRegistry, RaftEndpoint};
use spate_control_plane::raft::service::PeerService;
use spate_control_plane::raft::{db, META_GROUP};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::admin;
use super::config::Config;
use super::drain::Drainer;
use crate::cluster::forward::NodeForward;
use crate::cluster::router::ShardRouter;
use crate::cluster::{controller, ClusterBackend};
use crate::shard::manager::ShardManager;

/// A running node.
pub struct Node {
    pub id: u64,
    pub meta: MetaHandle,
    pub shards: Arc<ShardManager>,
    /// The Kinesis API backend of this node (also used by in-process tests).
    pub backend: Arc<ClusterBackend>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    flusher: Flusher,
    registry: Arc<GroupRegistry>,
    db: Arc<rocksdb::DB>,
    /// This node's cluster time (the process-wide clock functions use it while it lives).
    _clock: Arc<crate::cluster::clock::ClusterClock>,
}

/// A future that resolves once `rx` turns true.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl Node {
    /// Starts a node from its configuration.
    pub async fn start(mut cfg: Config) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&cfg.node.data_dir)?;
        let db = db::open(&cfg.node.data_dir.join("db"))?;
        let flusher = Flusher::start(&db);
        let peers = PeerChannels::new();
        let registry = GroupRegistry::new();
        let identity = LocalIdentity::new();
        // Received snapshots too large for memory; leftovers of a previous run are stale.
        let spool = cfg.node.data_dir.join("snapshot-spool");
        let _ = std::fs::remove_dir_all(&spool);
        registry.set_spool_dir(spool);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        // Peer gRPC first, so other nodes can reach our groups as soon as they exist (and
        // answer `Identify` while this node resolves its own identity).
        let peer_listener = TcpListener::bind(&cfg.listen.peer).await?;
        let router = PeerService::new(registry.clone(), identity.clone(), db.clone()).router();
        let stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            // Nagle off on every accepted peer connection: Raft and forwarded requests are
            // small request/response exchanges that would otherwise wait on delayed ACKs.
            let incoming =
                tonic::transport::server::TcpIncoming::from(peer_listener).with_nodelay(Some(true));
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
                tracing::error!(error = %e, "peer gRPC server failed");
            }
        }));

        // Who this node is: its stored id, its configured id, or — on an empty disk whose
        // configured id belonged to a node that had data — a new id replacing it.
        let advertised = cfg.advertised_peer().to_string();
        let candidate = replace::Candidate {
            configured_id: cfg.node.id,
            zone: cfg.node.zone.clone(),
            peer_addr: advertised.clone(),
            peers: cfg
                .cluster
                .peers
                .iter()
                .map(|p| (p.id, p.addr.clone()))
                .collect(),
        };
        let resolved = replace::resolve(&db, &peers, &candidate).await?;
        identity.set(resolved);
        if resolved.node_id != cfg.node.id {
            cfg.node.id = resolved.node_id;
            cfg.cluster.advertise = Some(advertised);
        }
        let id = cfg.node.id;
        tracing::info!(node = id, incarnation = %format!("{:#x}", resolved.incarnation), "node identity");

        // The metadata group.
        let (meta_store, view_rx) = MetaStore::open(db.clone())?;
        let meta_raft = openraft::Raft::new(
            id,
            cfg.raft.config("meta", true)?,
            GroupNetworkFactory::<MetaTypeConfig>::new(peers.clone(), META_GROUP),
            GroupLogStore::<MetaTypeConfig>::new(db.clone(), META_GROUP, flusher.clone()),
            meta_store,
        )
        .await?;
        registry.insert(META_GROUP, RaftEndpoint::new(meta_raft.clone()));
        let first_peer = cfg.cluster.peers.iter().map(|p| p.id).min();
        if first_peer == Some(id) && !meta_raft.is_initialized().await? {
            let members: BTreeMap<u64, BasicNode> = cfg
                .cluster
                .peers
                .iter()
                .map(|p| {
                    (
                        p.id,
                        BasicNode {
                            addr: p.addr.clone(),
                        },
                    )
                })
                .collect();
            tracing::info!(voters = members.len(), "initialising the control plane");
            if let Err(e) = meta_raft.initialize(members).await {
                tracing::warn!(error = %e, "control plane initialisation");
            }
        }
        let meta = MetaHandle::new(meta_raft.clone(), view_rx, peers.clone());
        tasks.push(tokio::spawn(track_incarnations(
            meta.clone(),
            peers.clone(),
        )));

        // Cluster time: every other node's wall clock, sampled and outvoting a wrong one.
        let clock = crate::cluster::clock::ClusterClock::new(id);
        clock.set_known(cfg.cluster.peers.len());
        crate::cluster::clock::install(&clock);
        tasks.push(tokio::spawn(crate::cluster::clock::run_sampler(
            Arc::downgrade(&clock),
            meta.clone(),
            peers.clone(),
        )));

        // Shard groups follow the shard map.
        let shards = ShardManager::new(
            id,
            db.clone(),
            flusher.clone(),
            peers.clone(),
            registry.clone(),
            cfg.raft,
            crate::shard::replica::Capacity {
                limits: cfg.limits,
                metrics: Default::default(),
            },
        );
        tasks.push(tokio::spawn(shards.clone().run(meta.subscribe())));
        let shard_router = Arc::new(ShardRouter::new(
            id,
            meta.clone(),
            shards.clone(),
            peers.clone(),
        ));
        registry.set_forward_handler(Arc::new(NodeForward {
            meta: meta.clone(),
            shards: shards.clone(),
        }));

        // Control loops (active only on the meta leader).
        let nodes: Vec<NodeInfo> = cfg
            .cluster
            .peers
            .iter()
            .map(|p| NodeInfo {
                id: p.id,
                zone: p.zone.clone(),
                peer_addr: p.addr.clone(),
                incarnation: None,
            })
            .collect();
        tasks.push(tokio::spawn(bootstrap(meta.clone(), nodes)));
        // Self-registration (zone, address) and, on the meta leader, learners for registered
        // nodes beyond the initial voters.
        let me = NodeInfo {
            id,
            zone: cfg.node.zone.clone(),
            peer_addr: cfg.advertised_peer().to_string(),
            incarnation: Some(resolved.incarnation),
        };
        if !cfg.is_initial_voter() {
            tracing::info!(node = id, advertise = %me.peer_addr, "not an initial voter: joining the cluster as a non-voter");
        }
        let peer_addrs: Vec<String> = cfg.cluster.peers.iter().map(|p| p.addr.clone()).collect();
        tasks.push(tokio::spawn(membership::register(
            meta.clone(),
            me.clone(),
            peer_addrs,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(membership::run_learners(
            meta.clone(),
            stop_rx.clone(),
        )));
        let timing = controller::ControlTiming {
            retention_hour_ms: cfg.kinesis.retention_hour_ms,
        };
        tasks.push(tokio::spawn(controller::run(
            meta.clone(),
            shard_router.clone(),
            timing,
        )));
        tasks.push(tokio::spawn(crate::cluster::autoscaler::run(
            meta.clone(),
            shard_router.clone(),
            cfg.autoscale_params(),
        )));
        tasks.push(tokio::spawn(crate::cluster::moves::run(
            meta.clone(),
            shards.clone(),
        )));
        let rebalance = crate::cluster::rebalance::RebalanceStatus::new(cfg.rebalance);
        tasks.push(tokio::spawn(crate::cluster::rebalance::run(
            meta.clone(),
            rebalance.clone(),
        )));
        tasks.push(tokio::spawn(controller::retention(
            meta.clone(),
            shards.clone(),
            timing,
        )));

        // Kinesis API.
        let backend = Arc::new(ClusterBackend::new(
            meta.clone(),
            shard_router,
            cfg.kinesis.region.clone(),
            cfg.kinesis.account_id.clone(),
        ));
        let api_listener = TcpListener::bind(&cfg.listen.api).await?;
        let stop = stopped(stop_rx.clone());
        let api_options = crate::api::ApiOptions {
            credentials: cfg.auth.credentials(),
        };
        let app = crate::api::router_with(backend.clone(), api_options);
        let api_app = app.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::api::serve_router(api_listener, api_app, stop).await {
                tracing::error!(error = %e, "Kinesis API server failed");
            }
        }));
        if let (Some(listen), Some(cert), Some(key)) =
            (&cfg.tls.listen, &cfg.tls.cert, &cfg.tls.key)
        {
            let tls = crate::api::tls::server_config(cert, key)?;
            let tls_listener = TcpListener::bind(listen).await?;
            let stop = stopped(stop_rx.clone());
            tracing::info!(tls = %listen, "Kinesis API TLS listener");
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::api::tls::serve_tls(tls_listener, app, tls, stop).await {
                    tracing::error!(error = %e, "Kinesis API TLS server failed");
                }
            }));
        }

        // Admin endpoints.
        let admin_listener = TcpListener::bind(&cfg.listen.admin).await?;
        let admin_state = admin::AdminState {
            node_id: id,
            me,
            meta: meta.clone(),
            shards: shards.clone(),
            drainer: Drainer::new(id, meta.clone(), shards.clone()),
            stop: stop_rx.clone(),
            rebalance,
        };
        let stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = admin::serve(admin_listener, admin_state, stop).await {
                tracing::error!(error = %e, "admin server failed");
            }
        }));

        tracing::info!(api = %cfg.listen.api, peer = %cfg.listen.peer, admin = %cfg.listen.admin, zone = %cfg.node.zone, "node started");
        Ok(Node {
            id,
            meta,
            shards,
            backend,
            stop_tx,
            tasks,
            flusher,
            registry,
            db,
            _clock: clock,
        })
    }

    /// Stops serving, shuts every Raft group down, syncs the WAL and closes the database
    /// (waiting, bounded, for the last handles to go).
    pub async fn shutdown(self) {
        let Node {
            id,
            meta,
            shards,
            backend,
            stop_tx,
            tasks,
            flusher,
            registry,
            db,
            _clock,
        } = self;
        let _ = stop_tx.send(true);
        shards.shutdown().await;
        let _ = meta.raft().shutdown().await;
        registry.clear();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        if let Err(e) = flusher.sync().await {
            tracing::warn!(error = %e, "final WAL sync");
        }
        drop((meta, shards, backend, registry));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&db) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if Arc::strong_count(&db) > 1 {
            tracing::warn!(
                node = id,
                handles = Arc::strong_count(&db),
                "database still referenced at shutdown"
            );
        }
        drop(db);
        tracing::info!(node = id, "node stopped");
    }
}

/// Keeps the transport's table of registered incarnations (which every Raft message is
/// addressed with) in step with the metadata.
async fn track_incarnations(meta: MetaHandle, peers: Arc<PeerChannels>) {
    let mut rx = meta.subscribe();
    let mut last = None;
    loop {
        let map: HashMap<u64, u64> = rx
            .borrow_and_update()
            .state
            .nodes
            .values()
            .filter_map(|n| Some((n.id, n.incarnation?)))
            .collect();
        if last.as_ref() != Some(&map) {
            peers.incarnations().replace(map.clone());
            last = Some(map);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Until the cluster is bootstrapped: whoever leads the metadata group proposes the cluster
/// secrets and the initial node registry (the command is idempotent).
async fn bootstrap(meta: MetaHandle, nodes: Vec<NodeInfo>) {
    loop {
        if meta.view().state.secrets.is_some() {
            return;
        }
        if meta.raft().is_leader() {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            let secrets = ClusterSecrets {
                iterator_key_id: 1,
                iterator_key: key,
                cluster_id: rand::random(),
            };
            match meta
                .propose(MetaCommand::Bootstrap {
                    secrets,
                    nodes: nodes.clone(),
                })
                .await
            {
                Ok(_) => tracing::info!("cluster bootstrapped"),
                Err(e) => tracing::warn!(error = %e, "bootstrap proposal"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! Three real nodes in one process (own RocksDB each, real gRPC on loopback), driven through
//! the API backend: the replicated write and read paths, leader failover, and restart.
//!
//! Invariants checked: every acknowledged record is read back at exactly its acknowledged
//! sequence number; sequence numbers strictly increase per shard; nothing is lost when the
//! leader of a shard stops; restart keeps streams and records.

use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_node::api::backend::{Backend, IteratorStart, PutEntry, StreamMode, StreamStatus};
use spate_node::server::config::{
    ClusterSection, Config, KinesisSection, ListenSection, NodeSection, PeerConfig,
};
use spate_node::server::node::Node;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Ports {
    api: u16,
    peer: u16,
    admin: u16,
}

fn configs(dir: &Path, ports: &[Ports]) -> Vec<Config> {
    let zones = ["az-a", "az-b", "az-c"];
    let peers: Vec<PeerConfig> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| PeerConfig {
            id: i as u64,
            zone: zones[i].into(),
            addr: format!("127.0.0.1:{}", p.peer),
        })
        .collect();
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| Config {
            node: NodeSection {
                id: i as u64,
                zone: zones[i].into(),
                data_dir: dir.join(format!("n{i}")),
            },
            listen: ListenSection {
                api: format!("127.0.0.1:{}", p.api),
                peer: format!("127.0.0.1:{}", p.peer),
                admin: format!("127.0.0.1:{}", p.admin),
            },
            cluster: ClusterSection {
                peers: peers.clone(),
                advertise: None,
            },
            kinesis: KinesisSection::default(),
            raft: Default::default(),
            tls: Default::default(),
            auth: Default::default(),
            // This test reads back every shard as fast as it can; throughput limits are
            // tested elsewhere (cluster-tests/tests/throttle.rs).
            limits: spate_node::shard::throttle::Limits {
                enabled: false,
                ..Default::default()
            },
            autoscale: Default::default(),
            rebalance: Default::default(),
        })
        .collect()
}

/// Starts the nodes together: a node on an empty disk waits until its peers answer whether
/// the cluster is new (`meta::replace`), so starting them one after another would wait forever.
async fn start_all(cfgs: &[Config]) -> Vec<Option<Node>> {
    futures::future::join_all(cfgs.iter().map(|c| Node::start(c.clone())))
        .await
        .into_iter()
        .map(|n| Some(n.expect("node starts")))
        .collect()
}

async fn wait_active(node: &Node, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(d) = node.backend.describe_stream(name).await {
            if d.status == StreamStatus::Active {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "stream {name} did not become ACTIVE"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn entries(prefix: &str, n: usize) -> Vec<PutEntry> {
    (0..n)
        .map(|i| PutEntry {
            partition_key: format!("{prefix}-{i}"),
            explicit_hash_key: None,
            data: Bytes::from(format!("{prefix}-payload-{i}")),
        })
        .collect()
}

/// (shard, seq) → data, for every acknowledged record.
type Acks = BTreeMap<(u32, String), Bytes>;

async fn put_acked(node: &Node, name: &str, batch: Vec<PutEntry>, acks: &mut Acks) -> usize {
    let datas: Vec<Bytes> = batch.iter().map(|e| e.data.clone()).collect();
    let mut ok = 0;
    if let Ok(results) = node.backend.put_records(name, batch).await {
        for (r, d) in results.into_iter().zip(datas) {
            if let Ok(p) = r {
                acks.insert((p.shard_index, p.sequence_number), d);
                ok += 1;
            }
        }
    }
    ok
}

fn seq_lt(a: &str, b: &str) -> bool {
    (a.len(), a) < (b.len(), b)
}

/// Reads every shard from TRIM_HORIZON through `node`; checks ordering; returns all records.
async fn read_all(node: &Node, name: &str) -> Result<Acks, String> {
    let desc = node
        .backend
        .describe_stream(name)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Acks::new();
    for shard in desc.shards {
        let mut it = node
            .backend
            .get_shard_iterator(name, shard.index, IteratorStart::TrimHorizon)
            .await
            .map_err(|e| e.to_string())?;
        let mut last: Option<String> = None;
        loop {
            let page = node
                .backend
                .get_records(&it, 10_000)
                .await
                .map_err(|e| e.to_string())?;
            if page.records.is_empty() {
                break;
            }
            for r in page.records {
                if let Some(prev) = &last {
                    assert!(
                        seq_lt(prev, &r.sequence_number),
                        "sequence numbers increase in shard {}",
                        shard.index
                    );
                }
                last = Some(r.sequence_number.clone());
                out.insert((shard.index, r.sequence_number), r.data);
            }
            it = page
                .next_shard_iterator
                .ok_or("open shard without a next iterator")?;
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicated_writes_survive_leader_stop_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<Ports> = (0..3)
        .map(|_| Ports {
            api: free_port(),
            peer: free_port(),
            admin: free_port(),
        })
        .collect();
    let cfgs = configs(dir.path(), &ports);
    let mut nodes = start_all(&cfgs).await;

    let n0 = nodes[0].as_ref().expect("node 0");
    // The control plane needs a moment to elect and bootstrap.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match n0
            .backend
            .create_stream("s", Some(3), StreamMode::Provisioned)
            .await
        {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "create_stream kept failing: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for n in nodes.iter().flatten() {
        wait_active(n, "s").await;
    }

    let mut acks = Acks::new();
    for b in 0..10 {
        let via = nodes[b % 3].as_ref().expect("node");
        assert_eq!(
            put_acked(via, "s", entries(&format!("a{b}"), 100), &mut acks).await,
            100
        );
    }
    assert_eq!(acks.len(), 1000);
    for n in nodes.iter().flatten() {
        assert_eq!(
            read_all(n, "s").await.expect("read"),
            acks,
            "node {} reads every acknowledged record",
            n.id
        );
    }

    // Stop the leader of shard 0; writes must succeed again through the survivors.
    let leader = nodes[0]
        .as_ref()
        .and_then(|n| {
            n.shards
                .all()
                .into_iter()
                .find(|r| r.identity.shard_index == 0)
        })
        .and_then(|r| r.raft.metrics().borrow_watched().current_leader)
        .expect("shard 0 has a leader") as usize;
    let stopped = nodes[leader].take().expect("leader node");
    stopped.shutdown().await;
    let via_idx = (leader + 1) % 3;
    let start = Instant::now();
    let mut recovered = false;
    while start.elapsed() < Duration::from_secs(20) {
        let via = nodes[via_idx].as_ref().expect("survivor");
        if put_acked(
            via,
            "s",
            entries(&format!("f{}", start.elapsed().as_millis()), 30),
            &mut acks,
        )
        .await
            == 30
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "writes recover after the leader stops");
    eprintln!(
        "writes recovered {:?} after stopping node {leader}",
        start.elapsed()
    );
    let survivor = nodes[via_idx].as_ref().expect("survivor");
    assert_eq!(read_all(survivor, "s").await.expect("read"), acks);

    // Restart the stopped node; then restart the whole cluster: nothing is lost.
    nodes[leader] = Some(Node::start(cfgs[leader].clone()).await.expect("restart"));
    for n in nodes.iter_mut() {
        if let Some(n) = n.take() {
            n.shutdown().await;
        }
    }
    let nodes = start_all(&cfgs).await;
    let n1 = nodes[1].as_ref().expect("node 1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = read_all(n1, "s").await;
        if got.as_ref() == Ok(&acks) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after restart: {:?} records readable of {}",
            got.map(|g| g.len()),
            acks.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}

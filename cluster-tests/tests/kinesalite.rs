//! Validates the client, workload, final read and history checker against any Kinesis endpoint
//! named by `KINESALITE_URL` (e.g. kinesalite). Ignored by a plain `cargo test` (which needs no
//! emulator); run them with `--ignored`:
//!
//! ```text
//! kinesalite --port 4611 --createStreamMs 0 --deleteStreamMs 0 &
//! KINESALITE_URL=http://127.0.0.1:4611 cargo test -p spate-cluster-tests --test kinesalite -- --ignored
//! ```

use std::time::Duration;

use spate_cluster_tests::bad_input;
use spate_cluster_tests::client::{IteratorType, KinesisClient, PutEntry};
use spate_cluster_tests::history::{check, Violation};
use spate_cluster_tests::workload::{final_read, Workload, WorkloadOpts};

fn endpoint() -> String {
    match std::env::var("KINESALITE_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!("set KINESALITE_URL to a Kinesis endpoint (e.g. kinesalite) to run this test"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis endpoint in KINESALITE_URL"]
async fn client_operations() {
    let url = endpoint();
    let c = KinesisClient::new(&url);
    let stream = format!("ctest-ops-{}", rand::random::<u32>());
    c.create_stream(&stream, 2).await.expect("create");
    let dup = c
        .create_stream(&stream, 2)
        .await
        .expect_err("duplicate create");
    assert_eq!(dup.kind, "ResourceInUseException", "{dup}");
    c.wait_active(&stream, Duration::from_secs(10))
        .await
        .expect("active");
    let s = c.describe_stream_summary(&stream).await.expect("describe");
    assert_eq!(s.stream_status, "ACTIVE");
    assert_eq!(s.open_shard_count, Some(2));
    assert!(
        s.stream_arn.ends_with(&format!(":stream/{stream}")),
        "{}",
        s.stream_arn
    );
    let shards = c.list_shards(&stream).await.expect("list shards");
    assert_eq!(
        shards
            .iter()
            .map(|s| s.shard_id.as_str())
            .collect::<Vec<_>>(),
        ["shardId-000000000000", "shardId-000000000001"]
    );

    let a = c
        .put_record(&stream, "key-a", b"hello", Some("0"))
        .await
        .expect("put");
    assert_eq!(a.shard_id, "shardId-000000000000");
    let entries: Vec<PutEntry> = (0..10)
        .map(|i| PutEntry {
            partition_key: format!("k{i}"),
            data: format!("batch-{i}").into_bytes(),
            explicit_hash_key: None,
        })
        .collect();
    let out = c.put_records(&stream, &entries).await.expect("put records");
    assert_eq!(out.failed_record_count, 0);
    assert_eq!(out.records.len(), 10);

    let it = c
        .get_shard_iterator(&stream, "shardId-000000000000", &IteratorType::TrimHorizon)
        .await
        .expect("iterator");
    let got = c.get_records(&it, Some(100)).await.expect("get records");
    assert_eq!(got.records[0].sequence_number, a.sequence_number);
    assert_eq!(got.records[0].data, b"hello");
    assert!(got.next_shard_iterator.is_some());
    let after = c
        .get_shard_iterator(
            &stream,
            "shardId-000000000000",
            &IteratorType::AfterSequenceNumber(a.sequence_number.clone()),
        )
        .await
        .expect("after iterator");
    let rest = c.get_records(&after, None).await.expect("get after");
    assert!(rest
        .records
        .iter()
        .all(|r| r.sequence_number != a.sequence_number));
    let latest = c
        .get_shard_iterator(&stream, "shardId-000000000000", &IteratorType::Latest)
        .await
        .expect("latest");
    assert!(c
        .get_records(&latest, None)
        .await
        .expect("get")
        .records
        .is_empty());

    let nf = c
        .describe_stream_summary("no-such-stream-ctest")
        .await
        .expect_err("unknown stream");
    assert_eq!(
        (nf.status, nf.kind.as_str()),
        (Some(400), "ResourceNotFoundException")
    );
    assert!(!nf.is_transient() && !nf.outcome_unknown());

    bad_input::run(&c, &stream).await.expect("bad input");
    c.delete_stream(&stream).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis endpoint in KINESALITE_URL"]
async fn workload_history_is_clean_and_tampering_is_caught() {
    let url = endpoint();
    let c = KinesisClient::new(&url);
    let stream = format!("ctest-wl-{}", rand::random::<u32>());
    c.create_stream(&stream, 2).await.expect("create");
    c.wait_active(&stream, Duration::from_secs(10))
        .await
        .expect("active");
    let shard_ids: Vec<String> = c
        .list_shards(&stream)
        .await
        .expect("shards")
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    let opts = WorkloadOpts {
        stream: stream.clone(),
        writers: 3,
        records_per_writer: 400,
        keys_per_writer: 8,
        batch_max: 8,
        pad: 32,
    };
    let mut wl = Workload::start(&opts, std::slice::from_ref(&c), &shard_ids);
    let stats = wl
        .join_writers(Duration::from_secs(60))
        .await
        .expect("writers");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let seen = wl.stop_readers().await.expect("readers");
    let acked: usize = stats.iter().map(|s| s.acked).sum();
    assert_eq!(acked, 1200, "{stats:?}");
    let per_shard = wl.acks_per_shard();
    assert_eq!(
        per_shard.len(),
        2,
        "keys must spread over both shards: {per_shard:?}"
    );
    eprintln!("acks per shard {per_shard:?}, tailers saw {seen:?}");
    assert!(seen.iter().sum::<usize>() > 0);

    let fr = final_read(&c, &stream).await.expect("final read");
    let history = wl.recorder.history(fr);
    let report = check(&history);
    eprintln!("{}", report.summary(10));
    assert!(report.ok(), "{}", report.summary(20));
    assert_eq!(report.records_read, 1200);
    assert_eq!(report.acked, 1200);

    // The checker catches damage to a real history.
    let mut lost = history.clone();
    let gone = lost.final_read[0].records.remove(5);
    let v = check(&lost).violations;
    assert!(
        v.iter().any(
            |x| matches!(x, Violation::LostAck { payload_id, .. } if Some(payload_id) == gone.payload_id.as_ref())
        ),
        "{v:?}"
    );
    let mut dup = history.clone();
    let copy = dup.final_read[1].records[3].clone();
    let mut copy2 = copy.clone();
    copy2.seq = format!("{}9", dup.final_read[1].records.last().unwrap().seq);
    dup.final_read[1].records.push(copy2);
    assert!(check(&dup)
        .violations
        .iter()
        .any(|x| matches!(x, Violation::Duplicate { .. })));
    let mut reordered = history.clone();
    let recs = &mut reordered.final_read[0].records;
    let (s3, s4) = (recs[3].seq.clone(), recs[4].seq.clone());
    recs.swap(3, 4);
    recs[3].seq = s3;
    recs[4].seq = s4;
    assert!(!check(&reordered).ok());

    c.delete_stream(&stream).await.expect("delete");
}

//! The real AWS SDK for Rust (`aws-sdk-kinesis`) against real Spate processes.
//!
//! * [`rust_sdk_api`]: a 3-process cluster (the harness); the SDK covers CreateStream
//!   (provisioned and on-demand), DescribeStream / DescribeStreamSummary, ListStreams (its
//!   paginator) and ListShards (NextToken pages), PutRecord, PutRecords, every iterator type,
//!   GetRecords, tags, retention up and down, the StreamExists / StreamNotExists waiters,
//!   DeleteStream, and one error of each family as the SDK's typed error variant; then
//!   enhanced fan-out over HTTP/1.1 (what the SDK speaks on `http://`).
//! * [`rust_sdk_efo_tls_h2`]: `spate dev` (3 nodes in one process, TLS on port + 30 with its
//!   self-signed CA); the SDK trusts that CA, negotiates HTTP/2 by ALPN, registers a consumer,
//!   subscribes, receives every record put during the subscription in order, and after a
//!   SplitShard of the subscribed shard sees `ChildShards` in the parent's last event.
//!
//! The HTTP client is the SDK's own hyper 1.x client (`aws-smithy-http-client`) with rustls on
//! ring, the same client the SDK's default features build on aws-lc.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use aws_sdk_kinesis::client::Waiters;
use aws_sdk_kinesis::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_kinesis::error::{BoxError, ProvideErrorMetadata};
use aws_sdk_kinesis::operation::describe_stream::DescribeStreamError;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, Record, ShardIteratorType, StreamMode, StreamModeDetails, StreamStatus,
};
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use spate_cluster_tests::harness::{Cluster, ClusterOpts};

#[path = "rust_sdk/dev.rs"]
mod dev;
#[path = "rust_sdk/efo.rs"]
mod efo;
#[path = "rust_sdk/errors.rs"]
mod errors;

use dev::{read_ca, Dev};
use efo::efo_round;
use errors::errors;

const MAX_HASH: u128 = u128::MAX;

/// Records, per response, the `transfer-encoding` header of SubscribeToShard answers:
/// `chunked` over HTTP/1.1; HTTP/2 has no such header.
#[derive(Debug, Clone, Default)]
struct Probe(Arc<Mutex<Vec<Option<String>>>>);

impl Intercept for Probe {
    fn name(&self) -> &'static str {
        "spate-transport-probe"
    }

    fn read_before_deserialization(
        &self,
        ctx: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let resp = ctx.response();
        if resp.headers().get("content-type") == Some("application/vnd.amazon.eventstream") {
            let te = resp.headers().get("transfer-encoding").map(str::to_string);
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(te);
        }
        Ok(())
    }
}

impl Probe {
    fn seen(&self) -> Vec<Option<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An SDK client for `endpoint`, trusting only `ca_pem` (if given) for TLS.
fn sdk_client(endpoint: &str, ca_pem: Option<&[u8]>, retries: bool, probe: &Probe) -> Client {
    let mut trust = TrustStore::empty().with_native_roots(false);
    if let Some(pem) = ca_pem {
        trust = trust.with_pem_certificate(pem.to_vec());
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .expect("tls context"),
        )
        .build_https();
    let conf = aws_sdk_kinesis::Config::builder()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "spate-test",
        ))
        .http_client(http)
        .retry_config(if retries {
            RetryConfig::standard()
        } else {
            RetryConfig::disabled()
        })
        .interceptor(probe.clone())
        .build();
    Client::from_conf(conf)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

fn shard_id(i: u32) -> String {
    format!("shardId-{i:012}")
}

/// Polls DescribeStreamSummary until ACTIVE. A node that has not applied the create yet
/// answers ResourceNotFound meanwhile (metadata reads are served from each node's copy).
async fn wait_active(c: &Client, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.describe_stream_summary().stream_name(name).send().await {
            Ok(s) => {
                let s = s.stream_description_summary().context("no summary")?;
                if s.stream_status() == &StreamStatus::Active {
                    return Ok(());
                }
            }
            Err(e) => {
                let e = e.into_service_error();
                ensure!(
                    e.is_resource_not_found_exception(),
                    "describe {name}: {e:?}"
                );
            }
        }
        ensure!(Instant::now() < deadline, "{name} not ACTIVE after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn iterator(
    c: &Client,
    stream: &str,
    shard: &str,
    kind: ShardIteratorType,
    seq: Option<&str>,
    ts: Option<DateTime>,
) -> Result<String> {
    let out = c
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind.clone())
        .set_starting_sequence_number(seq.map(str::to_string))
        .set_timestamp(ts)
        .send()
        .await
        .with_context(|| format!("get_shard_iterator {kind:?}"))?;
    out.shard_iterator()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no iterator for {kind:?}"))
}

/// Reads from `it` until `want` records arrived or the shard is caught up twice in a row.
async fn read(c: &Client, mut it: String, want: usize) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut empty_caught_up = 0;
    loop {
        let r = c
            .get_records()
            .shard_iterator(&it)
            .limit(1000)
            .send()
            .await
            .context("get_records")?;
        let n = r.records().len();
        out.extend(r.records().iter().cloned());
        ensure!(
            r.millis_behind_latest().is_some(),
            "GetRecords without MillisBehindLatest"
        );
        if out.len() >= want {
            return Ok(out);
        }
        if n == 0 && r.millis_behind_latest() == Some(0) {
            empty_caught_up += 1;
            if empty_caught_up >= 2 {
                return Ok(out);
            }
        }
        match r.next_shard_iterator() {
            Some(next) => it = next.to_string(),
            None => return Ok(out),
        }
        ensure!(Instant::now() < deadline, "read: timed out");
    }
}

/// Metadata reads are answered from each node's applied copy of the metadata log, so a change
/// acknowledged through one node shows on another moments later: polls `f` until `ok` (10 s).
async fn eventually<T, Fut>(
    what: &str,
    mut f: impl FnMut() -> Fut,
    ok: impl Fn(&T) -> bool,
) -> Result<T>
where
    T: std::fmt::Debug,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = f().await?;
        if ok(&v) {
            return Ok(v);
        }
        ensure!(Instant::now() < deadline, "{what}: still {v:?} after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn retention(c: &Client, name: &str) -> Result<i32> {
    let d = c.describe_stream_summary().stream_name(name).send().await?;
    Ok(d.stream_description_summary()
        .context("summary")?
        .retention_period_hours())
}

async fn tags(
    c: &Client,
    name: &str,
    limit: Option<i32>,
    start: Option<&str>,
) -> Result<(Vec<(String, String)>, bool)> {
    let t = c
        .list_tags_for_stream()
        .stream_name(name)
        .set_limit(limit)
        .set_exclusive_start_tag_key(start.map(str::to_string))
        .send()
        .await?;
    let kv = t
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    Ok((kv, t.has_more_tags()))
}

fn datas(recs: &[Record]) -> Vec<Vec<u8>> {
    recs.iter().map(|r| r.data().as_ref().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_api() {
    let cluster = Cluster::start(ClusterOpts::default())
        .await
        .expect("start cluster");
    let probe = Probe::default();
    let c: Vec<Client> = (0..3)
        .map(|i| sdk_client(&cluster.api_url(i), None, true, &probe))
        .collect();
    let strict = sdk_client(&cluster.api_url(0), None, false, &probe);
    api_walk(&c, &strict).await.expect("API walk");
    efo_round(&c[1], &probe, "h1", Some("chunked"))
        .await
        .expect("enhanced fan-out over HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_efo_tls_h2() {
    let dev = Dev::start().await.expect("spate dev");
    let ca = read_ca(&dev.ca()).expect("dev CA");
    let probe = Probe::default();
    let tls = sdk_client(
        &format!("https://localhost:{}", dev.port + 30),
        Some(&ca),
        true,
        &probe,
    );
    // Without the dev CA the certificate is refused: the TLS is real.
    let untrusting = sdk_client(
        &format!("https://localhost:{}", dev.port + 30),
        None,
        false,
        &probe,
    );
    let e = untrusting
        .list_streams()
        .send()
        .await
        .expect_err("an unknown CA must be refused");
    assert!(
        matches!(e, aws_sdk_kinesis::error::SdkError::DispatchFailure(_)),
        "{e:?}"
    );
    efo_round(&tls, &probe, "h2", None)
        .await
        .expect("enhanced fan-out over TLS + HTTP/2");
}

async fn api_walk(c: &[Client], strict: &Client) -> Result<()> {
    let prov = unique("rs-prov");
    let od = unique("rs-od");

    // ---- create: provisioned and on-demand
    c[0].create_stream()
        .stream_name(&prov)
        .shard_count(3)
        .send()
        .await
        .context("create provisioned")?;
    c[1].create_stream()
        .stream_name(&od)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()?,
        )
        .send()
        .await
        .context("create on-demand")?;
    for client in c {
        wait_active(client, &prov).await?;
        wait_active(client, &od).await?;
    }
    // The SDK's own waiter agrees (its first poll already sees ACTIVE).
    c[2].wait_until_stream_exists()
        .stream_name(&prov)
        .wait(Duration::from_secs(60))
        .await
        .map_err(|e| anyhow!("StreamExists waiter: {e:?}"))?;

    // ---- describe / describe-summary
    let d = c[2].describe_stream().stream_name(&prov).send().await?;
    let d = d.stream_description().context("no description")?;
    ensure!(d.stream_status() == &StreamStatus::Active);
    ensure!(d.stream_name() == prov);
    ensure!(
        d.stream_arn() == format!("arn:aws:kinesis:us-east-1:000000000000:stream/{prov}"),
        "arn {}",
        d.stream_arn()
    );
    ensure!(d.retention_period_hours() == 24);
    ensure!(!d.has_more_shards());
    ensure!(
        d.stream_mode_details().map(|m| m.stream_mode()) == Some(&StreamMode::Provisioned),
        "{:?}",
        d.stream_mode_details()
    );
    let ids: Vec<&str> = d.shards().iter().map(|s| s.shard_id()).collect();
    ensure!(ids == [shard_id(0), shard_id(1), shard_id(2)], "{ids:?}");
    let mut next_start = 0u128;
    for s in d.shards() {
        let r = s.hash_key_range().context("hash range")?;
        ensure!(r.starting_hash_key().parse::<u128>()? == next_start);
        next_start = r.ending_hash_key().parse::<u128>()?.wrapping_add(1);
        ensure!(s.sequence_number_range().is_some());
    }
    ensure!(next_start == 0, "shards do not tile the hash space");
    let age =
        DateTime::from(std::time::SystemTime::now()).secs() - d.stream_creation_timestamp().secs();
    ensure!((0..120).contains(&age), "creation timestamp {age} s ago");

    let s = c[1]
        .describe_stream_summary()
        .stream_name(&od)
        .send()
        .await?;
    let s = s.stream_description_summary().context("summary")?;
    ensure!(
        s.open_shard_count() == 4,
        "on-demand: {}",
        s.open_shard_count()
    );
    ensure!(
        s.stream_mode_details().map(|m| m.stream_mode()) == Some(&StreamMode::OnDemand),
        "{:?}",
        s.stream_mode_details()
    );
    ensure!(s.consumer_count() == Some(0));

    // ---- list streams: the SDK's paginator, one name per page
    let pages = c[0]
        .list_streams()
        .limit(1)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .context("list_streams paginator")?;
    ensure!(pages.len() >= 2, "{} pages", pages.len());
    let mut names: Vec<String> = Vec::new();
    for p in &pages {
        ensure!(p.stream_names().len() <= 1);
        ensure!(p.stream_names().len() == p.stream_summaries().len());
        names.extend(p.stream_names().iter().cloned());
    }
    ensure!(
        names.contains(&prov) && names.contains(&od),
        "listed {names:?}"
    );

    // ---- list shards: NextToken pages of one shard
    let first = c[2]
        .list_shards()
        .stream_name(&od)
        .max_results(1)
        .send()
        .await?;
    let mut listed: Vec<String> = first.shards().iter().map(|s| s.shard_id().into()).collect();
    let mut token = first.next_token().map(str::to_string);
    while let Some(t) = token {
        let p = c[2]
            .list_shards()
            .next_token(t)
            .max_results(1)
            .send()
            .await?;
        ensure!(p.shards().len() <= 1);
        listed.extend(p.shards().iter().map(|s| s.shard_id().to_string()));
        token = p.next_token().map(str::to_string);
    }
    ensure!(
        listed == (0..4).map(shard_id).collect::<Vec<_>>(),
        "{listed:?}"
    );

    // ---- put and put-batch, all on shard 0 (explicit hash key 0), through every node
    let before =
        DateTime::from_millis(DateTime::from(std::time::SystemTime::now()).to_millis()? - 2_000);
    let mut seqs = Vec::new();
    let mut want = Vec::new();
    for (i, client) in c.iter().enumerate() {
        let data = format!("single-{i}").into_bytes();
        let r = client
            .put_record()
            .stream_name(&prov)
            .partition_key(format!("pk-{i}"))
            .explicit_hash_key("0")
            .data(Blob::new(data.clone()))
            .send()
            .await
            .context("put_record")?;
        ensure!(r.shard_id() == shard_id(0), "{}", r.shard_id());
        seqs.push(r.sequence_number().to_string());
        want.push(data);
    }
    // AT_TIMESTAMP at this instant must start at the batch (same clock: loopback processes).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let batch_ts = DateTime::from(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let batch: Vec<PutRecordsRequestEntry> = (0..10)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(format!("batch-{i}").into_bytes()))
                .partition_key(format!("bk-{i}"))
                .explicit_hash_key("1")
                .build()
        })
        .collect::<Result<_, _>>()?;
    let r = c[1]
        .put_records()
        .stream_name(&prov)
        .set_records(Some(batch))
        .send()
        .await
        .context("put_records")?;
    ensure!(r.failed_record_count() == Some(0), "{r:?}");
    ensure!(r.records().len() == 10);
    for (i, e) in r.records().iter().enumerate() {
        ensure!(e.shard_id() == Some(shard_id(0).as_str()), "{e:?}");
        ensure!(e.error_code().is_none(), "{e:?}");
        seqs.push(e.sequence_number().context("no seq")?.to_string());
        want.push(format!("batch-{i}").into_bytes());
    }
    // Sequence numbers (decimal strings of up to 128 digits) grow within the shard.
    ensure!(
        seqs.windows(2)
            .all(|w| (w[0].len(), &w[0]) < (w[1].len(), &w[1])),
        "{seqs:?}"
    );
    // A record on another shard, through the third node.
    let other = c[2]
        .put_record()
        .stream_name(&prov)
        .partition_key("x")
        .explicit_hash_key(MAX_HASH.to_string())
        .data(Blob::new(b"last-shard".to_vec()))
        .send()
        .await?;
    ensure!(other.shard_id() == shard_id(2));

    // ---- iterators of every type, and get
    let s0 = shard_id(0);
    let all = read(
        &c[0],
        iterator(
            &c[0],
            &prov,
            &s0,
            ShardIteratorType::TrimHorizon,
            None,
            None,
        )
        .await?,
        13,
    )
    .await?;
    ensure!(datas(&all) == want, "TRIM_HORIZON: {:?}", datas(&all));
    ensure!(all.iter().map(|r| r.sequence_number()).collect::<Vec<_>>() == seqs);
    ensure!(all[0].partition_key() == Some("pk-0"), "{:?}", all[0]);
    let arrival = all[0]
        .approximate_arrival_timestamp()
        .context("no arrival timestamp")?;
    ensure!(arrival.to_millis()? >= before.to_millis()?);

    let at = read(
        &c[1],
        iterator(
            &c[1],
            &prov,
            &s0,
            ShardIteratorType::AtSequenceNumber,
            Some(&seqs[5]),
            None,
        )
        .await?,
        8,
    )
    .await?;
    ensure!(datas(&at) == want[5..], "AT_SEQUENCE_NUMBER");
    let after = read(
        &c[2],
        iterator(
            &c[2],
            &prov,
            &s0,
            ShardIteratorType::AfterSequenceNumber,
            Some(&seqs[5]),
            None,
        )
        .await?,
        7,
    )
    .await?;
    ensure!(datas(&after) == want[6..], "AFTER_SEQUENCE_NUMBER");
    let from_ts = read(
        &c[0],
        iterator(
            &c[0],
            &prov,
            &s0,
            ShardIteratorType::AtTimestamp,
            None,
            Some(before),
        )
        .await?,
        13,
    )
    .await?;
    ensure!(datas(&from_ts) == want, "AT_TIMESTAMP (before the puts)");
    let from_batch = read(
        &c[1],
        iterator(
            &c[1],
            &prov,
            &s0,
            ShardIteratorType::AtTimestamp,
            None,
            Some(batch_ts),
        )
        .await?,
        10,
    )
    .await?;
    ensure!(
        datas(&from_batch) == want[3..],
        "AT_TIMESTAMP (between the puts)"
    );
    let latest = iterator(&c[1], &prov, &s0, ShardIteratorType::Latest, None, None).await?;
    let r = c[1].get_records().shard_iterator(&latest).send().await?;
    ensure!(r.records().is_empty(), "LATEST before a put");
    let it = r
        .next_shard_iterator()
        .context("next iterator")?
        .to_string();
    c[0].put_record()
        .stream_name(&prov)
        .partition_key("late")
        .explicit_hash_key("0")
        .data(Blob::new(b"after-latest".to_vec()))
        .send()
        .await?;
    let late = read(&c[1], it, 1).await?;
    ensure!(datas(&late) == [b"after-latest".to_vec()], "LATEST");
    let last = read(
        &c[2],
        iterator(
            &c[2],
            &prov,
            &shard_id(2),
            ShardIteratorType::TrimHorizon,
            None,
            None,
        )
        .await?,
        1,
    )
    .await?;
    ensure!(datas(&last) == [b"last-shard".to_vec()]);

    // ---- tags
    c[0].add_tags_to_stream()
        .stream_name(&prov)
        .tags("team", "streams")
        .tags("env", "test")
        .tags("tier", "1")
        .send()
        .await?;
    let (all_tags, _) = eventually(
        "tags on node 1",
        || tags(&c[1], &prov, None, None),
        |t| t.0.len() == 3,
    )
    .await?;
    let (page, more) = tags(&c[1], &prov, Some(2), None).await?;
    ensure!(page.len() == 2 && more, "{page:?}");
    ensure!(page[..] == all_tags[..2], "{page:?} vs {all_tags:?}");
    let (rest, more) = tags(&c[1], &prov, None, Some(&page[1].0)).await?;
    ensure!(
        rest.len() == 1 && !more && rest[..] == all_tags[2..],
        "{rest:?}"
    );
    c[2].remove_tags_from_stream()
        .stream_name(&prov)
        .tag_keys("env")
        .send()
        .await?;
    let (mut kv, _) = eventually(
        "tags on node 0",
        || tags(&c[0], &prov, None, None),
        |t| t.0.len() == 2,
    )
    .await?;
    kv.sort();
    ensure!(
        kv == [
            ("team".to_string(), "streams".to_string()),
            ("tier".to_string(), "1".to_string())
        ],
        "{kv:?}"
    );

    // ---- retention up and down
    c[0].increase_stream_retention_period()
        .stream_name(&prov)
        .retention_period_hours(48)
        .send()
        .await?;
    eventually(
        "retention 48 on node 1",
        || retention(&c[1], &prov),
        |h| *h == 48,
    )
    .await?;
    // Through the node that saw it, so the decrease is not judged against 24.
    c[1].decrease_stream_retention_period()
        .stream_name(&prov)
        .retention_period_hours(24)
        .send()
        .await?;
    eventually(
        "retention 24 on node 0",
        || retention(&c[0], &prov),
        |h| *h == 24,
    )
    .await?;
    wait_active(&c[0], &prov).await?;

    errors(strict, &prov).await?;

    // ---- delete; the SDK's StreamNotExists waiter; ResourceNotFound after
    for (i, name) in [&prov, &od].into_iter().enumerate() {
        c[i].delete_stream().stream_name(name).send().await?;
        c[2].wait_until_stream_not_exists()
            .stream_name(name)
            .wait(Duration::from_secs(60))
            .await
            .map_err(|e| anyhow!("StreamNotExists waiter: {e:?}"))?;
    }
    let gone = c[2].describe_stream().stream_name(&prov).send().await;
    ensure!(
        matches!(
            gone.map_err(|e| e.into_service_error()),
            Err(DescribeStreamError::ResourceNotFoundException(_))
        ),
        "describe after delete"
    );
    Ok(())
}

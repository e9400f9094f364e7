//! `spate-bench`: a load generator for Kinesis-compatible endpoints on the loopback interface.
//!
//! It speaks raw HTTP/1.1 + JSON 1.1 (`X-Amz-Target: Kinesis_20131202.*`) over one
//! keep-alive connection per client task, with request bodies encoded before the clock
//! starts, so the measured cost is the server's. Every scenario is bounded by
//! `--duration-secs` and `--max-requests`.
//!
//! Scenarios (subcommands):
//! * `put-records`: C clients each sending PutRecords of `--batch` (500) records of
//!   `--record-size` bytes; reports records/s, MiB/s and request latency percentiles.
//! * `put-record`: C clients sending single-record PutRecord; latency p50/p99/p99.9, req/s.
//! * `put-get`: one producer at `--rate` records/s and one GetRecords poller reading from
//!   LATEST; reports put-to-get latency percentiles and missing/duplicate records.
//! * `get-records`: fills a one-shard stream, then C readers read it from TRIM_HORIZON to its
//!   end over and over; reports MiB/s read (see `spate-bench/fill.rs`).
//! * `retained`: fills a stream with `--fill-records` (1 M) small records, then measures
//!   `put-records` on it (the put rate with that much data retained).
//! * `efo`: registers a consumer, subscribes to a shard (SubscribeToShard) and puts records
//!   at `--rate` records/s; reports put-to-delivery latency from put start and from the ack
//!   (see `spate-bench/efo.rs`).
//!
//! Each scenario prints one JSON line on stdout (progress goes to stderr), including the
//! client's own CPU seconds (getrusage) so a reader can tell whether the client was the
//! bottleneck. The stream is created (`--shards`) if missing and awaited until ACTIVE.
//! Only loopback endpoints are accepted.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::{Rng, RngCore};
use serde_json::{json, Value};
use tokio::net::TcpStream;

#[path = "spate-bench/efo.rs"]
mod efo;
#[path = "spate-bench/fill.rs"]
mod fill;

#[derive(Parser, Debug)]
#[command(
    name = "spate-bench",
    about = "Load generator for Kinesis-compatible endpoints (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Variant names become the subcommand names (put-records, put-record, put-get).
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// C clients x PutRecords batches (default 500 x 1 KiB).
    PutRecords(PutRecordsArgs),
    /// C clients x single-record PutRecord.
    PutRecord(Common),
    /// One fixed-rate producer and one GetRecords poller on LATEST: put-to-get latency.
    PutGet(PutGetArgs),
    /// A registered consumer subscribed to one shard, one fixed-rate producer:
    /// enhanced fan-out put-to-delivery latency.
    Efo(EfoArgs),
    /// C readers reading a pre-filled one-shard stream from TRIM_HORIZON: GetRecords MiB/s.
    GetRecords(fill::GetRecordsArgs),
    /// PutRecords on a stream that already retains `--fill-records` records.
    Retained(fill::RetainedArgs),
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Kinesis endpoint(s), comma-separated, loopback only. Closed-loop clients are spread
    /// round-robin over them; put-get writes to the first and reads from the last.
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    endpoint: String,
    /// Stream to use; created if missing.
    #[arg(long, default_value = "spate-bench")]
    stream: String,
    /// Shard count when the stream has to be created.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Concurrent client tasks, one connection each.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Wall-clock bound of the measured phase.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Upper bound on requests in the measured phase (all clients together).
    #[arg(long, default_value_t = 100_000)]
    max_requests: u64,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Per-request timeout; a request that takes longer counts as an error.
    #[arg(long, default_value_t = 60.0)]
    request_timeout_secs: f64,
    /// Free-form label copied into the JSON summary (e.g. "spate" or "kinesalite").
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args, Debug, Clone)]
struct PutRecordsArgs {
    #[command(flatten)]
    common: Common,
    /// Records per PutRecords request (1..=500).
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

#[derive(Args, Debug, Clone)]
struct PutGetArgs {
    #[command(flatten)]
    common: Common,
    /// Producer rate, records per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Sleep between GetRecords polls that returned nothing (0 = tight polling).
    #[arg(long, default_value_t = 0)]
    poll_ms: u64,
}

#[derive(Args, Debug, Clone)]
struct EfoArgs {
    #[command(flatten)]
    common: Common,
    /// Producer rate, records per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
}

// ------------------------------------------------------------------------------ HTTP

/// One HTTP/1.1 keep-alive connection to the endpoint.
struct Conn {
    addr: SocketAddr,
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

struct Reply {
    status: StatusCode,
    body: Bytes,
}

impl Reply {
    fn error_type(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("__type").and_then(Value::as_str).map(str::to_owned))
            .map(|t| t.rsplit('#').next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| format!("HTTP{}", self.status.as_u16()))
    }
    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).context("response is not JSON")
    }
}

/// Per-request timeout (`--request-timeout-secs`), set once in `run`.
static REQUEST_TIMEOUT: OnceLock<Duration> = OnceLock::new();

const AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/kinesis/aws4_request, \
SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
Signature=0000000000000000000000000000000000000000000000000000000000000000";

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            addr,
            host: addr.to_string(),
            sender,
        })
    }

    async fn reconnect(&mut self) -> Result<()> {
        *self = Conn::connect(self.addr).await?;
        Ok(())
    }

    async fn call(&mut self, op: &str, body: Bytes) -> Result<Reply> {
        let limit = *REQUEST_TIMEOUT.get_or_init(|| Duration::from_secs(60));
        tokio::time::timeout(limit, self.call_inner(op, body))
            .await
            .map_err(|_| anyhow!("{op} timed out after {limit:?}"))?
    }

    async fn call_inner(&mut self, op: &str, body: Bytes) -> Result<Reply> {
        self.sender.ready().await.context("connection closed")?;
        let req = Request::post("/")
            .header("host", &self.host)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("Kinesis_20131202.{op}"))
            .header("x-amz-date", "20250101T000000Z")
            .header("authorization", AUTH)
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }

    /// A control-plane call: JSON in, JSON out, non-2xx is an error carrying its `__type`.
    async fn call_json(
        &mut self,
        op: &str,
        body: Value,
    ) -> Result<std::result::Result<Value, String>> {
        let r = self.call(op, Bytes::from(body.to_string())).await?;
        if r.status.is_success() {
            Ok(Ok(if r.body.is_empty() {
                json!({})
            } else {
                r.json()?
            }))
        } else {
            Ok(Err(r.error_type()))
        }
    }
}

fn parse_endpoints(eps: &str) -> Result<Vec<SocketAddr>> {
    let addrs = eps
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(parse_endpoint)
        .collect::<Result<Vec<_>>>()?;
    if addrs.is_empty() {
        bail!("no --endpoint given");
    }
    Ok(addrs)
}

fn parse_endpoint(ep: &str) -> Result<SocketAddr> {
    let rest = ep
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("endpoint must start with http:// (got {ep})"))?;
    let hostport = rest.trim_end_matches('/');
    let hostport = hostport.replacen("localhost:", "127.0.0.1:", 1);
    let addr: SocketAddr = hostport
        .parse()
        .with_context(|| format!("endpoint {ep} is not http://IP:PORT"))?;
    if !addr.ip().is_loopback() {
        bail!("refusing non-loopback endpoint {ep}");
    }
    Ok(addr)
}

// ------------------------------------------------------------------------------ stream setup

async fn ensure_stream(addr: SocketAddr, name: &str, shards: u32) -> Result<()> {
    let mut c = Conn::connect(addr).await?;
    let describe = json!({ "StreamName": name });
    match c
        .call_json("DescribeStreamSummary", describe.clone())
        .await?
    {
        Ok(_) => {}
        Err(t) if t == "ResourceNotFoundException" => {
            eprintln!("spate-bench: creating stream {name} with {shards} shards");
            match c
                .call_json(
                    "CreateStream",
                    json!({ "StreamName": name, "ShardCount": shards }),
                )
                .await?
            {
                Ok(_) => {}
                Err(t) if t == "ResourceInUseException" => {}
                Err(t) => bail!("CreateStream {name}: {t}"),
            }
        }
        Err(t) => bail!("DescribeStreamSummary {name}: {t}"),
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(v) = c
            .call_json("DescribeStreamSummary", describe.clone())
            .await?
        {
            let st = v["StreamDescriptionSummary"]["StreamStatus"]
                .as_str()
                .unwrap_or("");
            if st == "ACTIVE" {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("stream {name} not ACTIVE after 120s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The open shard whose hash range contains 0 (where ExplicitHashKey "0" lands).
async fn first_open_shard(addr: SocketAddr, name: &str) -> Result<String> {
    let mut c = Conn::connect(addr).await?;
    let v = c
        .call_json("ListShards", json!({ "StreamName": name }))
        .await?
        .map_err(|t| anyhow!("ListShards: {t}"))?;
    let shards = v["Shards"]
        .as_array()
        .ok_or_else(|| anyhow!("ListShards: no Shards"))?;
    shards
        .iter()
        .find(|s| {
            s["HashKeyRange"]["StartingHashKey"].as_str() == Some("0")
                && s["SequenceNumberRange"]
                    .get("EndingSequenceNumber")
                    .is_none()
        })
        .and_then(|s| s["ShardId"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("no open shard covers hash key 0"))
}

// ------------------------------------------------------------------------------ stats

fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Percentile (0..=1) of sorted microsecond samples, in milliseconds.
fn pct_ms(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[idx] as f64 / 1000.0)
}

fn latency_json(mut us: Vec<u64>, prefix: &str) -> serde_json::Map<String, Value> {
    us.sort_unstable();
    let mut m = serde_json::Map::new();
    for (name, p) in [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p999", 0.999),
        ("max", 1.0),
    ] {
        m.insert(
            format!("{prefix}{name}_ms"),
            json!(pct_ms(&us, p).map(round3)),
        );
    }
    m
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Default)]
struct TaskStats {
    lat_us: Vec<u64>,
    ok: u64,
    errors: u64,
    failed_records: u64,
    error_types: Vec<String>,
}

/// The FailedRecordCount of a PutRecords response, found without a full JSON parse.
fn failed_record_count(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"FailedRecordCount\":";
    let pos = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: String = body[pos..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().ok()
}

fn random_b64(rng: &mut impl RngCore, n: usize) -> String {
    let mut buf = vec![0u8; n];
    rng.fill_bytes(&mut buf);
    B64.encode(buf)
}

/// Run `clients` tasks that each send bodies from `pool` until the deadline or the shared
/// request budget runs out.
async fn closed_loop(
    addrs: &[SocketAddr],
    op: &'static str,
    pool: Arc<Vec<Bytes>>,
    common: &Common,
    records_per_request: u64,
) -> Result<(Vec<TaskStats>, f64)> {
    let budget = Arc::new(AtomicU64::new(0));
    let max = common.max_requests;
    let mut conns = Vec::with_capacity(common.clients);
    for i in 0..common.clients.max(1) {
        conns.push(Conn::connect(addrs[i % addrs.len()]).await?);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(common.duration_secs);
    let mut handles = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let pool = pool.clone();
        let budget = budget.clone();
        handles.push(tokio::spawn(async move {
            let mut st = TaskStats::default();
            let mut k = i;
            while Instant::now() < deadline && budget.fetch_add(1, Ordering::Relaxed) < max {
                let body = pool[k % pool.len()].clone();
                k += 1;
                let t0 = Instant::now();
                match conn.call(op, body).await {
                    Ok(r) if r.status.is_success() => {
                        st.lat_us.push(t0.elapsed().as_micros() as u64);
                        st.ok += 1;
                        if records_per_request > 1 {
                            st.failed_records +=
                                failed_record_count(&r.body).unwrap_or(records_per_request);
                        }
                    }
                    Ok(r) => {
                        st.errors += 1;
                        if st.error_types.len() < 5 {
                            st.error_types.push(r.error_type());
                        }
                    }
                    Err(e) => {
                        st.errors += 1;
                        if st.error_types.len() < 5 {
                            st.error_types.push(format!("{e:#}"));
                        }
                        if st.errors > 100 || conn.reconnect().await.is_err() {
                            break;
                        }
                    }
                }
            }
            st
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await?);
    }
    Ok((out, start.elapsed().as_secs_f64()))
}

fn merge(stats: Vec<TaskStats>) -> TaskStats {
    let mut all = TaskStats::default();
    for s in stats {
        all.lat_us.extend(s.lat_us);
        all.ok += s.ok;
        all.errors += s.errors;
        all.failed_records += s.failed_records;
        for t in s.error_types {
            if all.error_types.len() < 5 && !all.error_types.contains(&t) {
                all.error_types.push(t);
            }
        }
    }
    all
}

// ------------------------------------------------------------------------------ scenarios

async fn put_records(a: PutRecordsArgs) -> Result<Value> {
    let c = &a.common;
    if !(1..=500).contains(&a.batch) {
        bail!("--batch must be 1..=500");
    }
    let addrs = parse_endpoints(&c.endpoint)?;
    ensure_stream(addrs[0], &c.stream, c.shards).await?;
    let mut rng = rand::thread_rng();
    let pool: Vec<Bytes> = (0..16)
        .map(|_| {
            let recs: Vec<Value> = (0..a.batch)
                .map(|_| {
                    json!({ "Data": random_b64(&mut rng, c.record_size),
                            "PartitionKey": format!("pk-{}", rng.gen::<u64>()) })
                })
                .collect();
            Bytes::from(json!({ "StreamName": c.stream, "Records": recs }).to_string())
        })
        .collect();
    let body_bytes = pool[0].len();
    let cpu0 = cpu_secs();
    let (stats, secs) =
        closed_loop(&addrs, "PutRecords", Arc::new(pool), c, a.batch as u64).await?;
    let cpu = cpu_secs() - cpu0;
    let s = merge(stats);
    let records = s.ok * a.batch as u64 - s.failed_records.min(s.ok * a.batch as u64);
    let mib = (records as f64 * c.record_size as f64) / (1024.0 * 1024.0);
    let mut out = json!({
        "scenario": "put-records", "label": c.label, "endpoint": c.endpoint, "stream": c.stream,
        "clients": c.clients, "batch": a.batch, "record_size": c.record_size,
        "request_body_bytes": body_bytes,
        "requests": s.ok, "errors": s.errors, "error_types": s.error_types,
        "records": records, "failed_records": s.failed_records,
        "duration_secs": round3(secs),
        "records_per_sec": (records as f64 / secs).round(),
        "mib_per_sec": round3(mib / secs),
        "requests_per_sec": round3(s.ok as f64 / secs),
        "client_cpu_secs": round3(cpu),
        "client_cpu_util": round3(cpu / secs),
    });
    extend(&mut out, latency_json(s.lat_us, ""));
    Ok(out)
}

async fn put_record(c: Common) -> Result<Value> {
    let addrs = parse_endpoints(&c.endpoint)?;
    ensure_stream(addrs[0], &c.stream, c.shards).await?;
    let mut rng = rand::thread_rng();
    let pool: Vec<Bytes> = (0..256)
        .map(|_| {
            Bytes::from(
                json!({ "StreamName": c.stream, "Data": random_b64(&mut rng, c.record_size),
                        "PartitionKey": format!("pk-{}", rng.gen::<u64>()) })
                .to_string(),
            )
        })
        .collect();
    let cpu0 = cpu_secs();
    let (stats, secs) = closed_loop(&addrs, "PutRecord", Arc::new(pool), &c, 1).await?;
    let cpu = cpu_secs() - cpu0;
    let s = merge(stats);
    let mut out = json!({
        "scenario": "put-record", "label": c.label, "endpoint": c.endpoint, "stream": c.stream,
        "clients": c.clients, "record_size": c.record_size,
        "requests": s.ok, "errors": s.errors, "error_types": s.error_types,
        "duration_secs": round3(secs),
        "requests_per_sec": round3(s.ok as f64 / secs),
        "mib_per_sec": round3(s.ok as f64 * c.record_size as f64 / (1024.0 * 1024.0) / secs),
        "client_cpu_secs": round3(cpu),
        "client_cpu_util": round3(cpu / secs),
    });
    extend(&mut out, latency_json(s.lat_us, ""));
    Ok(out)
}

fn extend(v: &mut Value, m: serde_json::Map<String, Value>) {
    if let Value::Object(o) = v {
        o.extend(m);
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn put_get(a: PutGetArgs) -> Result<Value> {
    let c = a.common.clone();
    if a.rate <= 0.0 {
        bail!("--rate must be > 0");
    }
    if c.record_size < 16 {
        bail!("--record-size must be >= 16 for put-get (timestamp + id header)");
    }
    let addrs = parse_endpoints(&c.endpoint)?;
    ensure_stream(addrs[0], &c.stream, c.shards).await?;
    let shard = first_open_shard(addrs[0], &c.stream).await?;

    // Reader: iterator at LATEST, taken before the first put.
    let mut reader = Conn::connect(addrs[addrs.len() - 1]).await?;
    let it = reader
        .call_json(
            "GetShardIterator",
            json!({ "StreamName": c.stream, "ShardId": shard, "ShardIteratorType": "LATEST" }),
        )
        .await?
        .map_err(|t| anyhow!("GetShardIterator: {t}"))?;
    let mut it = it["ShardIterator"]
        .as_str()
        .ok_or_else(|| anyhow!("GetShardIterator: no ShardIterator"))?
        .to_owned();

    let sent = Arc::new(AtomicU64::new(0));
    let producer_done = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(c.duration_secs);

    let producer = {
        let c = c.clone();
        let sent = sent.clone();
        let producer_done = producer_done.clone();
        let mut conn = Conn::connect(addrs[0]).await?;
        let pad = vec![0x5au8; c.record_size - 16];
        tokio::spawn(async move {
            let mut st = TaskStats::default();
            let period = Duration::from_secs_f64(1.0 / a.rate);
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut id: u64 = 0;
            while Instant::now() < deadline && id < c.max_requests {
                tick.tick().await;
                let mut data = Vec::with_capacity(c.record_size);
                data.extend_from_slice(&now_us().to_be_bytes());
                data.extend_from_slice(&id.to_be_bytes());
                data.extend_from_slice(&pad);
                let body = json!({ "StreamName": c.stream, "Data": B64.encode(&data),
                                   "PartitionKey": "p2g", "ExplicitHashKey": "0" });
                let t0 = Instant::now();
                match conn.call("PutRecord", Bytes::from(body.to_string())).await {
                    Ok(r) if r.status.is_success() => {
                        st.lat_us.push(t0.elapsed().as_micros() as u64);
                        st.ok += 1;
                    }
                    Ok(r) => {
                        st.errors += 1;
                        if st.error_types.len() < 5 {
                            st.error_types.push(r.error_type());
                        }
                    }
                    Err(e) => {
                        st.errors += 1;
                        st.error_types.push(format!("{e:#}"));
                        if conn.reconnect().await.is_err() {
                            break;
                        }
                    }
                }
                id += 1;
                sent.store(st.ok, Ordering::Relaxed);
            }
            producer_done.store(1, Ordering::Release);
            st
        })
    };

    // Poll until everything acknowledged has been read, or 5 s after the producer stopped.
    let mut p2g_us = Vec::new();
    let mut seen = HashSet::new();
    let mut duplicates = 0u64;
    let mut polls = 0u64;
    let mut read_errors = 0u64;
    let mut read_error_types: Vec<String> = Vec::new();
    let mut done_at: Option<Instant> = None;
    loop {
        if producer_done.load(Ordering::Acquire) == 1 {
            let t = *done_at.get_or_insert_with(Instant::now);
            if seen.len() as u64 >= sent.load(Ordering::Relaxed)
                || t.elapsed() > Duration::from_secs(5)
            {
                break;
            }
        }
        polls += 1;
        let r = reader
            .call(
                "GetRecords",
                Bytes::from(json!({ "ShardIterator": it, "Limit": 10000 }).to_string()),
            )
            .await;
        let r = match r {
            Ok(r) if r.status.is_success() => r,
            Ok(r) => {
                read_errors += 1;
                if read_error_types.len() < 5 {
                    read_error_types.push(r.error_type());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => {
                read_errors += 1;
                read_error_types.push(format!("{e:#}"));
                reader.reconnect().await?;
                continue;
            }
        };
        let now = now_us();
        let v = r.json()?;
        let recs = v["Records"].as_array().cloned().unwrap_or_default();
        for rec in &recs {
            let data = rec["Data"]
                .as_str()
                .and_then(|d| B64.decode(d).ok())
                .ok_or_else(|| anyhow!("GetRecords: record without base64 Data"))?;
            if data.len() < 16 {
                bail!("GetRecords: record shorter than the 16-byte header");
            }
            let ts = u64::from_be_bytes(data[0..8].try_into()?);
            let id = u64::from_be_bytes(data[8..16].try_into()?);
            if seen.insert(id) {
                p2g_us.push(now.saturating_sub(ts));
            } else {
                duplicates += 1;
            }
        }
        match v["NextShardIterator"].as_str() {
            Some(n) => it = n.to_owned(),
            None => bail!("GetRecords: shard closed during put-get"),
        }
        if recs.is_empty() && a.poll_ms > 0 {
            tokio::time::sleep(Duration::from_millis(a.poll_ms)).await;
        }
        if polls > 10_000_000 {
            break;
        }
    }
    let prod = producer.await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let received = seen.len() as u64;
    let mut out = json!({
        "scenario": "put-get", "label": c.label, "endpoint": c.endpoint, "stream": c.stream,
        "shard": shard, "rate": a.rate, "poll_ms": a.poll_ms, "record_size": c.record_size,
        "sent": prod.ok, "put_errors": prod.errors, "put_error_types": prod.error_types,
        "received": received, "missing": prod.ok.saturating_sub(received), "duplicates": duplicates,
        "polls": polls, "polls_per_sec": round3(polls as f64 / secs),
        "read_errors": read_errors, "read_error_types": read_error_types,
        "duration_secs": round3(secs),
        "client_cpu_secs": round3(cpu),
        "client_cpu_util": round3(cpu / secs),
    });
    extend(&mut out, latency_json(p2g_us, "p2g_"));
    extend(&mut out, latency_json(prod.lat_us, "put_"));
    Ok(out)
}

fn run(cli: Cli) -> Result<Value> {
    let common = match &cli.cmd {
        Cmd::PutRecords(a) => &a.common,
        Cmd::PutRecord(c) => c,
        Cmd::PutGet(a) => &a.common,
        Cmd::Efo(a) => &a.common,
        Cmd::GetRecords(a) => &a.common,
        Cmd::Retained(a) => &a.put.common,
    };
    if !common.request_timeout_secs.is_finite() || common.request_timeout_secs <= 0.0 {
        bail!("--request-timeout-secs must be > 0");
    }
    let _ = REQUEST_TIMEOUT.set(Duration::from_secs_f64(common.request_timeout_secs));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.cmd {
            Cmd::PutRecords(a) => put_records(a).await,
            Cmd::PutRecord(c) => put_record(c).await,
            Cmd::PutGet(a) => put_get(a).await,
            Cmd::Efo(a) => efo::run(a).await,
            Cmd::GetRecords(a) => fill::get_records(a).await,
            Cmd::Retained(a) => fill::retained(a).await,
        }
    })
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(summary) => {
            println!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spate-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

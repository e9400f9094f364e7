//! Scenarios over a pre-filled stream:
//!
//! * `get-records`: fills a one-shard stream with `--fill-mib` of records, then C readers each
//!   read the shard from TRIM_HORIZON to its end with GetRecords (`--limit` records per call),
//!   over and over until the deadline; reports MiB/s and records/s read, calls/s and the
//!   latency of one GetRecords call.
//! * `retained`: fills a stream with `--fill-records` small records (`--fill-size` bytes each),
//!   then runs the `put-records` measurement on it, so the put rate with that many records
//!   retained can be compared with the rate on an empty stream.
//!
//! Filling is not measured; it reports its own rate. Record payloads are random, so they do
//! not compress.

use super::*;

#[derive(Args, Debug, Clone)]
pub(super) struct GetRecordsArgs {
    #[command(flatten)]
    pub(super) common: Common,
    /// MiB of records (of `--record-size` bytes) in the shard before the reads start.
    #[arg(long, default_value_t = 64)]
    pub(super) fill_mib: u64,
    /// Records per GetRecords call (1..=10000).
    #[arg(long, default_value_t = 10_000)]
    pub(super) limit: u32,
}

#[derive(Args, Debug, Clone)]
pub(super) struct RetainedArgs {
    #[command(flatten)]
    pub(super) put: PutRecordsArgs,
    /// Records in the stream before the measured puts start.
    #[arg(long, default_value_t = 1_000_000)]
    pub(super) fill_records: u64,
    /// Payload bytes of each fill record.
    #[arg(long, default_value_t = 64)]
    pub(super) fill_size: usize,
}

/// Puts `records` records of `size` bytes with 8 connections of PutRecords × 500 (not
/// measured). Fails on any error or failed record: the later measurement needs them all.
async fn fill(addrs: &[SocketAddr], stream: &str, records: u64, size: usize) -> Result<()> {
    const BATCH: u64 = 500;
    const CONNS: u64 = 8;
    let mut rng = rand::thread_rng();
    let pool: Arc<Vec<Bytes>> = Arc::new(
        (0..8)
            .map(|_| {
                let recs: Vec<Value> = (0..BATCH)
                    .map(|_| {
                        json!({ "Data": random_b64(&mut rng, size),
                                "PartitionKey": format!("pk-{}", rng.gen::<u64>()) })
                    })
                    .collect();
                Bytes::from(json!({ "StreamName": stream, "Records": recs }).to_string())
            })
            .collect(),
    );
    let requests = records.div_ceil(BATCH);
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CONNS {
        let mut conn = Conn::connect(addrs[i as usize % addrs.len()]).await?;
        let (pool, next) = (pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= requests {
                    return Ok::<(), anyhow::Error>(());
                }
                let body = pool[k as usize % pool.len()].clone();
                // Throttling or a transient error: retry the same batch a few times.
                let mut tries = 0;
                loop {
                    tries += 1;
                    let r = conn.call("PutRecords", body.clone()).await?;
                    if r.status.is_success() && failed_record_count(&r.body) == Some(0) {
                        break;
                    }
                    if tries >= 20 {
                        bail!("fill: PutRecords keeps failing: {}", r.error_type());
                    }
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "spate-bench: filled {stream} with {} records of {size} B in {secs:.1} s ({:.0} records/s)",
        requests * BATCH,
        (requests * BATCH) as f64 / secs
    );
    Ok(())
}

pub(super) async fn retained(a: RetainedArgs) -> Result<Value> {
    let c = &a.put.common;
    let addrs = parse_endpoints(&c.endpoint)?;
    ensure_stream(addrs[0], &c.stream, c.shards).await?;
    let t0 = Instant::now();
    fill(&addrs, &c.stream, a.fill_records, a.fill_size).await?;
    let fill_secs = t0.elapsed().as_secs_f64();
    let mut out = put_records(a.put.clone()).await?;
    extend(
        &mut out,
        [
            ("scenario".to_string(), json!("retained")),
            ("retained_records".to_string(), json!(a.fill_records)),
            ("fill_size".to_string(), json!(a.fill_size)),
            ("fill_secs".to_string(), json!(round3(fill_secs))),
        ]
        .into_iter()
        .collect(),
    );
    Ok(out)
}

/// One reader: TRIM_HORIZON to the end of the shard, again and again, until the deadline or
/// the shared call budget runs out.
async fn read_loop(
    mut conn: Conn,
    stream: String,
    shard: String,
    limit: u32,
    deadline: Instant,
    budget: Arc<AtomicU64>,
    max: u64,
) -> Result<(TaskStats, u64, u64)> {
    let mut st = TaskStats::default();
    let (mut records, mut bytes) = (0u64, 0u64);
    'outer: while Instant::now() < deadline {
        let it = conn
            .call_json(
                "GetShardIterator",
                json!({ "StreamName": stream, "ShardId": shard,
                        "ShardIteratorType": "TRIM_HORIZON" }),
            )
            .await?
            .map_err(|t| anyhow!("GetShardIterator: {t}"))?;
        let mut iter = it["ShardIterator"].as_str().map(str::to_owned);
        while let Some(i) = iter.take() {
            if Instant::now() >= deadline || budget.fetch_add(1, Ordering::Relaxed) >= max {
                break 'outer;
            }
            let body = Bytes::from(json!({ "ShardIterator": i, "Limit": limit }).to_string());
            let t = Instant::now();
            let r = conn.call("GetRecords", body).await?;
            if !r.status.is_success() {
                st.errors += 1;
                if st.error_types.len() < 5 {
                    st.error_types.push(r.error_type());
                }
                // Throttled (kinesalite has no limits; spate runs unthrottled): back off.
                tokio::time::sleep(Duration::from_millis(100)).await;
                iter = Some(i);
                continue;
            }
            st.lat_us.push(t.elapsed().as_micros() as u64);
            st.ok += 1;
            let v = r.json()?;
            let got = v["Records"].as_array().map_or(&[][..], |a| a.as_slice());
            if got.is_empty() {
                break; // caught up: start over from TRIM_HORIZON
            }
            records += got.len() as u64;
            bytes += got
                .iter()
                .map(|r| r["Data"].as_str().map_or(0, decoded_len))
                .sum::<u64>();
            iter = v["NextShardIterator"].as_str().map(str::to_owned);
        }
    }
    Ok((st, records, bytes))
}

/// Bytes a base64 string decodes to.
fn decoded_len(b64: &str) -> u64 {
    let pad = b64.bytes().rev().take_while(|b| *b == b'=').count() as u64;
    (b64.len() as u64 / 4 * 3).saturating_sub(pad)
}

pub(super) async fn get_records(a: GetRecordsArgs) -> Result<Value> {
    let c = &a.common;
    if !(1..=10_000).contains(&a.limit) {
        bail!("--limit must be 1..=10000");
    }
    let addrs = parse_endpoints(&c.endpoint)?;
    ensure_stream(addrs[0], &c.stream, 1).await?;
    let shard = first_open_shard(addrs[0], &c.stream).await?;
    let fill_records = (a.fill_mib << 20) / c.record_size.max(1) as u64;
    fill(&addrs, &c.stream, fill_records, c.record_size).await?;
    let budget = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(c.duration_secs);
    let mut tasks = Vec::new();
    for i in 0..c.clients.max(1) {
        let conn = Conn::connect(addrs[i % addrs.len()]).await?;
        tasks.push(tokio::spawn(read_loop(
            conn,
            c.stream.clone(),
            shard.clone(),
            a.limit,
            deadline,
            budget.clone(),
            c.max_requests,
        )));
    }
    let (mut stats, mut records, mut bytes) = (Vec::new(), 0u64, 0u64);
    for t in tasks {
        let (s, r, b) = t.await??;
        stats.push(s);
        records += r;
        bytes += b;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let s = merge(stats);
    let mut out = json!({
        "scenario": "get-records", "label": c.label, "endpoint": c.endpoint, "stream": c.stream,
        "shard": shard, "clients": c.clients, "record_size": c.record_size,
        "fill_mib": a.fill_mib, "limit": a.limit,
        "calls": s.ok, "errors": s.errors, "error_types": s.error_types,
        "records": records,
        "duration_secs": round3(secs),
        "records_per_sec": (records as f64 / secs).round(),
        "mib_per_sec": round3(bytes as f64 / (1024.0 * 1024.0) / secs),
        "calls_per_sec": round3(s.ok as f64 / secs),
        "client_cpu_secs": round3(cpu),
        "client_cpu_util": round3(cpu / secs),
    });
    extend(&mut out, latency_json(s.lat_us, ""));
    Ok(out)
}

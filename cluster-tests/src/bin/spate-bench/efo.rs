//! The `efo` scenario: enhanced fan-out put-to-delivery latency.
//!
//! Registers a fresh consumer on the stream, subscribes to the shard that holds hash key 0
//! (SubscribeToShard over HTTP/1.1 through the last endpoint, from LATEST), then one producer
//! puts single records (`ExplicitHashKey` 0) at `--rate` through the first endpoint, each
//! carrying its put-start wall-clock time and an id. For each delivered record it reports
//! the delay from the put's start and from the moment its acknowledgement reached the
//! producer (a record may be delivered before its ack arrives: those count as 0 and are
//! counted in `delivered_before_ack`). The consumer is deregistered at the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use spate_cluster_tests::eventstream::{event_records, Decoder};
use tokio::net::TcpStream;

use super::{
    cpu_secs, ensure_stream, extend, first_open_shard, latency_json, now_us, parse_endpoints,
    round3, Conn, EfoArgs, TaskStats, AUTH, B64,
};
use base64::Engine as _;

/// A subscription lasts 5 minutes; the measured phase must fit in one.
const MAX_DURATION_SECS: f64 = 280.0;

/// An open SubscribeToShard response body.
struct EventReader {
    body: Incoming,
    dec: Decoder,
}

impl EventReader {
    async fn open(addr: std::net::SocketAddr, consumer_arn: &str, shard: &str) -> Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let body = json!({ "ConsumerARN": consumer_arn, "ShardId": shard,
                           "StartingPosition": { "Type": "LATEST" } });
        let req = Request::post("/")
            .header("host", addr.to_string())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
            .header("x-amz-date", "20250101T000000Z")
            .header("authorization", AUTH)
            .body(Full::new(Bytes::from(body.to_string())))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
            .await
            .map_err(|_| anyhow!("SubscribeToShard: no answer in 30 s"))??;
        let status = resp.status();
        if !status.is_success() {
            let b = resp.into_body().collect().await?.to_bytes();
            bail!(
                "SubscribeToShard: HTTP {status}: {}",
                String::from_utf8_lossy(&b)
            );
        }
        let mut r = EventReader {
            body: resp.into_body(),
            dec: Decoder::default(),
        };
        let (kind, _) = r.next(Duration::from_secs(30)).await?;
        if kind != "initial-response" {
            bail!("SubscribeToShard: first event is {kind}");
        }
        Ok(r)
    }

    /// The next message: (event or exception type, JSON payload).
    async fn next(&mut self, timeout: Duration) -> Result<(String, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.dec.next_message()? {
                let kind = m
                    .header(":event-type")
                    .or_else(|| m.header(":exception-type"))
                    .unwrap_or("?")
                    .to_string();
                let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                if m.header(":message-type") == Some("exception") {
                    bail!("subscription failed: {kind}: {v}");
                }
                return Ok((kind, v));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .map_err(|_| anyhow!("no event in {timeout:?}"))?;
            match frame {
                Some(f) => {
                    if let Ok(data) = f?.into_data() {
                        self.dec.push(&data);
                    }
                }
                None => bail!("the subscription ended"),
            }
        }
    }
}

async fn stream_arn(conn: &mut Conn, stream: &str) -> Result<String> {
    let v = conn
        .call_json("DescribeStreamSummary", json!({ "StreamName": stream }))
        .await?
        .map_err(|t| anyhow!("DescribeStreamSummary: {t}"))?;
    v["StreamDescriptionSummary"]["StreamARN"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("DescribeStreamSummary: no StreamARN"))
}

/// Registers a consumer and waits until it is ACTIVE; returns its ARN.
async fn register(conn: &mut Conn, stream_arn: &str, name: &str) -> Result<String> {
    let v = conn
        .call_json(
            "RegisterStreamConsumer",
            json!({ "StreamARN": stream_arn, "ConsumerName": name }),
        )
        .await?
        .map_err(|t| anyhow!("RegisterStreamConsumer: {t}"))?;
    let arn = v["Consumer"]["ConsumerARN"]
        .as_str()
        .ok_or_else(|| anyhow!("RegisterStreamConsumer: no ConsumerARN"))?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = conn
            .call_json("DescribeStreamConsumer", json!({ "ConsumerARN": arn }))
            .await?;
        if let Ok(d) = d {
            if d["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE" {
                return Ok(arn);
            }
        }
        if Instant::now() > deadline {
            bail!("consumer {name} not ACTIVE after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(a: EfoArgs) -> Result<Value> {
    let c = a.common.clone();
    if a.rate <= 0.0 {
        bail!("--rate must be > 0");
    }
    if c.record_size < 16 {
        bail!("--record-size must be >= 16 for efo (timestamp + id header)");
    }
    if c.duration_secs > MAX_DURATION_SECS {
        bail!("--duration-secs must be <= {MAX_DURATION_SECS} (one subscription lasts 5 minutes)");
    }
    let addrs = parse_endpoints(&c.endpoint)?;
    ensure_stream(addrs[0], &c.stream, c.shards).await?;
    let shard = first_open_shard(addrs[0], &c.stream).await?;
    let mut ctl = Conn::connect(addrs[0]).await?;
    let arn = stream_arn(&mut ctl, &c.stream).await?;
    let consumer_name = format!("spate-bench-{}", rand::random::<u32>());
    let consumer = register(&mut ctl, &arn, &consumer_name).await?;
    let measured = measure(&a, &addrs, &shard, &consumer).await;
    let dereg = ctl
        .call_json(
            "DeregisterStreamConsumer",
            json!({ "ConsumerARN": consumer }),
        )
        .await;
    match dereg {
        Ok(Ok(_)) => {}
        Ok(Err(t)) => eprintln!("spate-bench: DeregisterStreamConsumer {consumer_name}: {t}"),
        Err(e) => eprintln!("spate-bench: DeregisterStreamConsumer {consumer_name}: {e:#}"),
    }
    let mut out = measured?;
    extend(
        &mut out,
        json!({ "consumer": consumer_name, "shard": shard })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    Ok(out)
}

async fn measure(
    a: &EfoArgs,
    addrs: &[std::net::SocketAddr],
    shard: &str,
    consumer: &str,
) -> Result<Value> {
    let c = a.common.clone();
    let mut reader = EventReader::open(addrs[addrs.len() - 1], consumer, shard).await?;

    let acks: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let producer_done = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(c.duration_secs);
    let producer = {
        let c = c.clone();
        let (acks, sent, producer_done) = (acks.clone(), sent.clone(), producer_done.clone());
        let mut conn = Conn::connect(addrs[0]).await?;
        let pad = vec![0x5au8; c.record_size - 16];
        let rate = a.rate;
        tokio::spawn(async move {
            let mut st = TaskStats::default();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut id: u64 = 0;
            while Instant::now() < deadline && id < c.max_requests {
                tick.tick().await;
                let mut data = Vec::with_capacity(c.record_size);
                data.extend_from_slice(&now_us().to_be_bytes());
                data.extend_from_slice(&id.to_be_bytes());
                data.extend_from_slice(&pad);
                let body = json!({ "StreamName": c.stream, "Data": B64.encode(&data),
                                   "PartitionKey": "efo", "ExplicitHashKey": "0" });
                let t0 = Instant::now();
                match conn.call("PutRecord", Bytes::from(body.to_string())).await {
                    Ok(r) if r.status.is_success() => {
                        let ack = now_us();
                        st.lat_us.push(t0.elapsed().as_micros() as u64);
                        st.ok += 1;
                        acks.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, ack);
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

    // Read until everything acknowledged arrived, or 5 s after the producer stopped.
    let mut delivered: HashMap<u64, (u64, u64)> = HashMap::new(); // id -> (put start, delivery)
    let (mut duplicates, mut events, mut empty_events) = (0u64, 0u64, 0u64);
    let mut done_at: Option<Instant> = None;
    loop {
        if producer_done.load(Ordering::Acquire) == 1 {
            let t = *done_at.get_or_insert_with(Instant::now);
            if delivered.len() as u64 >= sent.load(Ordering::Relaxed)
                || t.elapsed() > Duration::from_secs(5)
            {
                break;
            }
        }
        let (kind, ev) = match reader.next(Duration::from_secs(1)).await {
            Ok(x) => x,
            Err(e) if e.to_string().starts_with("no event in") => continue,
            Err(e) => return Err(e),
        };
        let now = now_us();
        if kind != "SubscribeToShardEvent" {
            continue;
        }
        events += 1;
        let recs = event_records(&ev)?;
        if recs.is_empty() {
            empty_events += 1;
        }
        for (_, data) in recs {
            if data.len() < 16 {
                bail!("SubscribeToShard: record shorter than the 16-byte header");
            }
            let ts = u64::from_be_bytes(data[0..8].try_into()?);
            let id = u64::from_be_bytes(data[8..16].try_into()?);
            if delivered.insert(id, (ts, now)).is_some() {
                duplicates += 1;
            }
        }
    }
    let prod = producer.await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let acks = acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut from_put = Vec::with_capacity(delivered.len());
    let mut from_ack = Vec::with_capacity(delivered.len());
    let mut before_ack = 0u64;
    for (id, (ts, at)) in &delivered {
        from_put.push(at.saturating_sub(*ts));
        if let Some(ack) = acks.get(id) {
            if at < ack {
                before_ack += 1;
            }
            from_ack.push(at.saturating_sub(*ack));
        }
    }
    let received = delivered.len() as u64;
    let mut out = json!({
        "scenario": "efo", "label": c.label, "endpoint": c.endpoint, "stream": c.stream,
        "rate": a.rate, "record_size": c.record_size,
        "sent": prod.ok, "put_errors": prod.errors, "put_error_types": prod.error_types,
        "received": received, "missing": prod.ok.saturating_sub(received),
        "duplicates": duplicates, "events": events, "empty_events": empty_events,
        "delivered_before_ack": before_ack,
        "duration_secs": round3(secs),
        "client_cpu_secs": round3(cpu),
        "client_cpu_util": round3(cpu / secs),
    });
    extend(&mut out, latency_json(from_put, "p2d_"));
    extend(&mut out, latency_json(from_ack, "ack2d_"));
    extend(&mut out, latency_json(prod.lat_us, "put_"));
    Ok(out)
}

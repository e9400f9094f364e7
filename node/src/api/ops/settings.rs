//! Settings operations: Start/StopStreamEncryption, Enable/DisableEnhancedMonitoring,
//! DescribeLimits, DescribeAccountSettings, UpdateAccountSettings, UpdateMaxRecordSize,
//! UpdateStreamWarmThroughput — all pure metadata — and UpdateStreamMode (the capacity-mode
//! switch: `Backend::update_stream_mode`, `docs/capacity.md`) (see `docs/compatibility.md`
//! for what they do and do not do here) — and the describe-output helpers built on the
//! settings.

use spate_proto::kinesis::limits;
use spate_proto::kinesis::model::{
    AccountSettingsOutput, CommitmentOutput, DescribeLimitsOutput, Empty, EnhancedMetrics,
    EnhancedMonitoringInput, EnhancedMonitoringOutput, StreamEncryptionInput,
    UpdateAccountSettingsInput, UpdateMaxRecordSizeInput, UpdateStreamModeInput,
    UpdateStreamWarmThroughputInput, UpdateStreamWarmThroughputOutput, WarmThroughput,
};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::{arn_of, check_stream_ref, resolve_stream, timestamp};
use crate::api::backend::{
    AccountSettings, Backend, Encryption, SettingsChange, StreamMode, StreamSettings, StreamStatus,
};
use crate::api::token::now_ms;
use crate::api::validate::Violations;

/// Shard-level metrics, in the order AWS lists them.
pub const METRICS: &[&str] = &[
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];
const METRIC_NAMES: &[&str] = &[
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
    "ALL",
];
const ENCRYPTION_TYPES: &[&str] = &["NONE", "KMS"];
const COMMITMENT_STATUSES: &[&str] = &["ENABLED", "DISABLED"];
/// Most ON_DEMAND streams an account may have (AWS's default quota).
pub const ON_DEMAND_STREAM_LIMIT: u32 = 50;

/// Fails with `ResourceInUseException` unless the stream is ACTIVE.
pub(crate) async fn require_active<B: Backend>(backend: &B, name: &str) -> KinesisResult<()> {
    let d = backend.describe_stream(name).await?;
    if d.status != StreamStatus::Active {
        return Err(KinesisError::in_use(format!(
            "Stream {name} under account {} not ACTIVE, instead in state {}",
            backend.account_id(),
            d.status.as_str()
        )));
    }
    Ok(())
}

/// The enabled metrics, in AWS's order.
pub(crate) fn metrics_of(s: &StreamSettings) -> Vec<String> {
    METRICS
        .iter()
        .filter(|m| s.shard_level_metrics.contains(**m))
        .map(|m| m.to_string())
        .collect()
}

/// `EnhancedMonitoring` of describe outputs.
pub(crate) fn enhanced_monitoring(s: &StreamSettings) -> Vec<EnhancedMetrics> {
    vec![EnhancedMetrics {
        shard_level_metrics: metrics_of(s),
    }]
}

/// `EncryptionType` and `KeyId` of describe and put outputs.
pub(crate) fn encryption_of(s: &StreamSettings) -> (String, Option<String>) {
    match &s.encryption {
        Some(e) => ("KMS".to_string(), Some(e.key_id.clone())),
        None => ("NONE".to_string(), None),
    }
}

fn check_encryption(v: &mut Violations, req: &StreamEncryptionInput) {
    check_stream_ref(v, req.stream_name.as_deref(), req.stream_arn.as_deref());
    if let Some(t) = v.required("encryptionType", &req.encryption_type) {
        v.one_of("encryptionType", t, ENCRYPTION_TYPES);
    }
    if let Some(k) = v.required("keyId", &req.key_id) {
        v.string("keyId", k, 1, 2048, None);
    }
}

async fn encryption<B: Backend>(
    backend: &B,
    req: StreamEncryptionInput,
    start: bool,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_encryption(&mut v, &req);
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    if req.encryption_type.as_deref() != Some("KMS") {
        return Err(KinesisError::invalid(
            "EncryptionType must be KMS: it is the only server-side encryption type.",
        ));
    }
    require_active(backend, &name).await?;
    let change = if start {
        SettingsChange::Encryption(Some(Encryption {
            key_id: req.key_id.unwrap_or_default(),
        }))
    } else {
        SettingsChange::Encryption(None)
    };
    backend.change_settings(&name, change).await?;
    Ok(Empty {})
}

pub async fn start_stream_encryption<B: Backend>(
    backend: &B,
    req: StreamEncryptionInput,
) -> KinesisResult<Empty> {
    encryption(backend, req, true).await
}

pub async fn stop_stream_encryption<B: Backend>(
    backend: &B,
    req: StreamEncryptionInput,
) -> KinesisResult<Empty> {
    encryption(backend, req, false).await
}

async fn monitoring<B: Backend>(
    backend: &B,
    req: EnhancedMonitoringInput,
    enable: bool,
) -> KinesisResult<EnhancedMonitoringOutput> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(m) = v.required("shardLevelMetrics", &req.shard_level_metrics) {
        v.enum_list("shardLevelMetrics", m, (1, 7), METRIC_NAMES);
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    require_active(backend, &name).await?;
    let requested = req.shard_level_metrics.unwrap_or_default();
    let names: Vec<String> = if requested.iter().any(|m| m == "ALL") {
        METRICS.iter().map(|m| m.to_string()).collect()
    } else {
        requested
    };
    let before = backend.stream_settings(&name).await?;
    let mut after = before.clone();
    let change = SettingsChange::Metrics { enable, names };
    after
        .apply(&name, &change)
        .map_err(|e| KinesisError::invalid(e.to_string()))?;
    backend.change_settings(&name, change).await?;
    Ok(EnhancedMonitoringOutput {
        stream_name: name.clone(),
        current_shard_level_metrics: metrics_of(&before),
        desired_shard_level_metrics: metrics_of(&after),
        stream_arn: arn_of(backend, &name),
    })
}

pub async fn enable_enhanced_monitoring<B: Backend>(
    backend: &B,
    req: EnhancedMonitoringInput,
) -> KinesisResult<EnhancedMonitoringOutput> {
    monitoring(backend, req, true).await
}

pub async fn disable_enhanced_monitoring<B: Backend>(
    backend: &B,
    req: EnhancedMonitoringInput,
) -> KinesisResult<EnhancedMonitoringOutput> {
    monitoring(backend, req, false).await
}

pub async fn describe_limits<B: Backend>(
    backend: &B,
    _req: Empty,
) -> KinesisResult<DescribeLimitsOutput> {
    let streams = backend.list_streams().await?;
    let open: u32 = streams
        .iter()
        .filter(|d| d.mode == StreamMode::Provisioned)
        .map(|d| d.open_shard_count)
        .sum();
    let on_demand = streams
        .iter()
        .filter(|d| d.mode == StreamMode::OnDemand)
        .count();
    Ok(DescribeLimitsOutput {
        shard_limit: limits::DEFAULT_SHARD_LIMIT,
        open_shard_count: open,
        on_demand_stream_count: u32::try_from(on_demand).unwrap_or(u32::MAX),
        on_demand_stream_count_limit: ON_DEMAND_STREAM_LIMIT,
    })
}

fn account_output(a: &AccountSettings, now: u64) -> AccountSettingsOutput {
    let out = match &a.commitment {
        None => CommitmentOutput {
            status: "DISABLED".to_string(),
            ..Default::default()
        },
        Some(c) => CommitmentOutput {
            status: match c.ended_ms {
                None => "ENABLED",
                Some(end) if end > now => "ENABLED_UNTIL_EARLIEST_ALLOWED_END",
                Some(_) => "DISABLED",
            }
            .to_string(),
            started_at: Some(timestamp(c.started_ms)),
            ended_at: c.ended_ms.map(timestamp),
            earliest_allowed_end_at: Some(timestamp(c.earliest_allowed_end_ms)),
        },
    };
    AccountSettingsOutput {
        minimum_throughput_billing_commitment: Some(out),
    }
}

pub async fn describe_account_settings<B: Backend>(
    backend: &B,
    _req: Empty,
) -> KinesisResult<AccountSettingsOutput> {
    Ok(account_output(&backend.account_settings().await?, now_ms()))
}

pub async fn update_account_settings<B: Backend>(
    backend: &B,
    req: UpdateAccountSettingsInput,
) -> KinesisResult<AccountSettingsOutput> {
    let mut v = Violations::new();
    let mut enable = false;
    if let Some(c) = v.required(
        "minimumThroughputBillingCommitment",
        &req.minimum_throughput_billing_commitment,
    ) {
        if let Some(s) = v.required("minimumThroughputBillingCommitment.status", &c.status) {
            v.one_of(
                "minimumThroughputBillingCommitment.status",
                s,
                COMMITMENT_STATUSES,
            );
            enable = s == "ENABLED";
        }
    }
    v.finish()?;
    let now = now_ms();
    backend
        .change_settings(
            "",
            SettingsChange::Commitment {
                enable,
                now_ms: now,
            },
        )
        .await?;
    Ok(account_output(&backend.account_settings().await?, now))
}

pub async fn update_max_record_size<B: Backend>(
    backend: &B,
    req: UpdateMaxRecordSizeInput,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(k) = v.required("maxRecordSizeInKiB", &req.max_record_size_in_kib) {
        v.range("maxRecordSizeInKiB", *k, Some(1024), Some(10240));
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    require_active(backend, &name).await?;
    let kib = req
        .max_record_size_in_kib
        .and_then(|k| u32::try_from(k).ok())
        .unwrap_or(1024);
    backend
        .change_settings(&name, SettingsChange::MaxRecordSize(kib))
        .await?;
    Ok(Empty {})
}

pub async fn update_stream_warm_throughput<B: Backend>(
    backend: &B,
    req: UpdateStreamWarmThroughputInput,
) -> KinesisResult<UpdateStreamWarmThroughputOutput> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(m) = v.required("warmThroughputMiBps", &req.warm_throughput_mibps) {
        v.range("warmThroughputMiBps", *m, Some(0), None);
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let d = backend.describe_stream(&name).await?;
    if d.mode != StreamMode::OnDemand {
        return Err(KinesisError::invalid(format!(
            "Warm throughput applies to ON_DEMAND streams only; stream {name} is PROVISIONED."
        )));
    }
    require_active(backend, &name).await?;
    let before = backend.stream_settings(&name).await?;
    let target = req
        .warm_throughput_mibps
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(u32::MAX);
    backend
        .change_settings(&name, SettingsChange::WarmThroughput(target))
        .await?;
    Ok(UpdateStreamWarmThroughputOutput {
        stream_arn: arn_of(backend, &name),
        stream_name: name,
        warm_throughput: WarmThroughput {
            target_mibps: Some(target),
            current_mibps: Some(before.warm_throughput_mibps.unwrap_or(0)),
        },
    })
}

pub async fn update_stream_mode<B: Backend>(
    backend: &B,
    req: UpdateStreamModeInput,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    if let Some(arn) = v.required("streamARN", &req.stream_arn) {
        check_stream_ref(&mut v, None, Some(arn));
    }
    let mut target = None;
    if let Some(details) = v.required("streamModeDetails", &req.stream_mode_details) {
        if let Some(m) = v.required("streamModeDetails.streamMode", &details.stream_mode) {
            if v.one_of(
                "streamModeDetails.streamMode",
                m,
                &["PROVISIONED", "ON_DEMAND"],
            ) {
                target = Some(if m == "ON_DEMAND" {
                    StreamMode::OnDemand
                } else {
                    StreamMode::Provisioned
                });
            }
        }
    }
    if let Some(m) = req.warm_throughput_mibps {
        v.range("warmThroughputMiBps", m, Some(0), None);
    }
    v.finish()?;
    let name = resolve_stream(backend, None, req.stream_arn.as_deref())?;
    let d = backend.describe_stream(&name).await?;
    require_active(backend, &name).await?;
    let target = target.unwrap_or(d.mode);
    if target == d.mode {
        return Err(KinesisError::invalid(format!(
            "Stream {name} under account {} is already in {} mode.",
            backend.account_id(),
            d.mode.as_str()
        )));
    }
    let warm = req
        .warm_throughput_mibps
        .map(|m| u32::try_from(m).unwrap_or(u32::MAX));
    if target == StreamMode::Provisioned && warm.is_some() {
        return Err(KinesisError::invalid(
            "WarmThroughputMiBps is valid only when the stream mode is being updated to ON_DEMAND.",
        ));
    }
    if target == StreamMode::OnDemand {
        let on_demand = backend
            .list_streams()
            .await?
            .iter()
            .filter(|s| s.mode == StreamMode::OnDemand)
            .count();
        if on_demand >= ON_DEMAND_STREAM_LIMIT as usize {
            return Err(KinesisError::limit(format!(
                "This request would exceed the limit of {ON_DEMAND_STREAM_LIMIT} ON_DEMAND streams for the account {}.",
                backend.account_id()
            )));
        }
    }
    backend.update_stream_mode(&name, target).await?;
    if let Some(m) = warm {
        backend
            .change_settings(&name, SettingsChange::WarmThroughput(m))
            .await?;
    }
    Ok(Empty {})
}

//! A retry helper for transient Kinesis errors that records every attempt it makes.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::KResult;

/// One attempt made by [`retry`].
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// 1-based attempt number.
    pub n: u32,
    /// When the attempt started, relative to the first attempt.
    pub started_after: Duration,
    /// How long the attempt took.
    pub took: Duration,
    /// `None` on success, else the error text.
    pub error: Option<String>,
    /// Whether the failed attempt may have been applied.
    pub outcome_unknown: bool,
}

/// How [`retry`] retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 60,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(30),
        }
    }
}

/// Run `f(attempt_number)` until it succeeds, fails with a non-transient error, or the policy is
/// exhausted. Returns the final result and every attempt made.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut f: F) -> (KResult<T>, Vec<Attempt>)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = KResult<T>>,
{
    let start = Instant::now();
    let mut attempts = Vec::new();
    let mut backoff = policy.initial_backoff;
    let mut n = 0;
    loop {
        n += 1;
        let t0 = Instant::now();
        let res = f(n).await;
        let mut rec = Attempt {
            n,
            started_after: t0 - start,
            took: t0.elapsed(),
            error: None,
            outcome_unknown: false,
        };
        match res {
            Ok(v) => {
                attempts.push(rec);
                return (Ok(v), attempts);
            }
            Err(e) => {
                rec.error = Some(e.to_string());
                rec.outcome_unknown = e.outcome_unknown();
                attempts.push(rec);
                let exhausted = n >= policy.max_attempts || start.elapsed() >= policy.deadline;
                if !e.is_transient() || exhausted {
                    return (Err(e), attempts);
                }
            }
        }
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}

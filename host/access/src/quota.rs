//! Per-key quotas, counted per (key, pipeline): a request rate (token
//! bucket), invocations at once, and a budget of requests per period. A
//! request over any of them is refused (429) with how long to wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Principal;

/// What one key may use of each pipeline; every field optional (no limit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per second, sustained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Requests that may come at once above the rate (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Invocations running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<u32>,
    /// Requests per `budget_period_secs` (a fixed window from first use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_period_secs: Option<u64>,
}

impl Quota {
    pub fn is_unlimited(&self) -> bool {
        self.rate_per_second.is_none() && self.concurrent.is_none() && self.budget.is_none()
    }
}

/// Which limit refused a request, and when to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// `rate`, `concurrent` or `budget` (the metrics label).
    pub limit: &'static str,
    pub retry_after: Duration,
    pub message: String,
}

#[derive(Default)]
struct Counters {
    tokens: f64,
    refilled: Option<Instant>,
    running: u32,
    used: u64,
    window: Option<Instant>,
}

/// The counters of every (key, pipeline) pair seen.
#[derive(Default, Clone)]
pub struct Quotas {
    counters: Arc<Mutex<HashMap<(String, String), Counters>>>,
}

/// A request let in; dropping it ends its concurrent invocation.
pub struct Admission {
    quotas: Quotas,
    at: Option<(String, String)>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(at) = self.at.take() {
            let mut counters = self.quotas.counters.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(counters) = counters.get_mut(&at) {
                counters.running = counters.running.saturating_sub(1);
            }
        }
    }
}

impl Quotas {
    /// Let `principal` invoke `pipeline` now, or say why not.
    pub fn admit(&self, principal: &Principal, pipeline: &str) -> Result<Admission, Refusal> {
        let quota = &principal.quota;
        if quota.is_unlimited() {
            return Ok(Admission { quotas: self.clone(), at: None });
        }
        let at = (principal.key_id.clone(), pipeline.to_string());
        let now = Instant::now();
        let mut all = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let counters = all.entry(at.clone()).or_default();
        let refuse = |limit, retry_after: Duration, what: String| Refusal {
            limit,
            retry_after,
            message: format!(
                "key `{}` is over its {what} for `{pipeline}`; retry after {retry_after:?}",
                principal.key_id
            ),
        };
        if let Some(most) = quota.concurrent {
            if counters.running >= most {
                return Err(refuse(
                    "concurrent",
                    Duration::from_secs(1),
                    format!("limit of {most} invocations at once"),
                ));
            }
        }
        if let Some(budget) = quota.budget {
            let period = Duration::from_secs(quota.budget_period_secs.unwrap_or(86_400).max(1));
            let start = *counters.window.get_or_insert(now);
            if now.duration_since(start) >= period {
                (counters.window, counters.used) = (Some(now), 0);
            }
            if counters.used >= budget {
                let left = period.saturating_sub(now.duration_since(counters.window.unwrap_or(now)));
                return Err(refuse("budget", left, format!("budget of {budget} requests per {period:?}")));
            }
        }
        if let Some(rate) = quota.rate_per_second.filter(|r| *r > 0.0) {
            let burst = f64::from(quota.burst.unwrap_or(rate.ceil() as u32).max(1));
            let last = counters.refilled.unwrap_or(now);
            let elapsed = now.duration_since(last).as_secs_f64();
            counters.tokens =
                if counters.refilled.is_none() { burst } else { (counters.tokens + elapsed * rate).min(burst) };
            counters.refilled = Some(now);
            if counters.tokens < 1.0 {
                let wait = Duration::from_secs_f64((1.0 - counters.tokens) / rate);
                return Err(refuse("rate", wait, format!("rate of {rate} requests per second")));
            }
            counters.tokens -= 1.0;
        }
        counters.used += 1;
        counters.running += 1;
        Ok(Admission { quotas: self.clone(), at: Some(at) })
    }
}

impl Quotas {
    /// Charge a request's further rows to the budget (one was charged when
    /// it was admitted), so that batching does not multiply a budget. The
    /// next request over the budget is refused.
    pub fn charge_rows(&self, principal: &Principal, pipeline: &str, rows: u64) {
        if principal.quota.budget.is_none() || rows <= 1 {
            return;
        }
        let mut all = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(counters) = all.get_mut(&(principal.key_id.clone(), pipeline.to_string())) {
            counters.used = counters.used.saturating_add(rows - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    fn principal(quota: Quota) -> Principal {
        Principal { key_id: "k".into(), name: "k".into(), scopes: vec![Scope::Invoke(None)], quota }
    }

    #[test]
    fn rate_concurrency_and_budget_each_refuse_with_a_wait() {
        let quotas = Quotas::default();
        let rated = principal(Quota { rate_per_second: Some(2.0), burst: Some(2), ..Quota::default() });
        assert!(quotas.admit(&rated, "p").is_ok() && quotas.admit(&rated, "p").is_ok());
        let refused = quotas.admit(&rated, "p").err().expect("the third at once is over the burst");
        assert_eq!(refused.limit, "rate");
        assert!(refused.retry_after <= Duration::from_millis(500), "{refused:?}");
        assert!(quotas.admit(&rated, "other").is_ok(), "counted per pipeline");
        std::thread::sleep(Duration::from_millis(520));
        assert!(quotas.admit(&rated, "p").is_ok(), "refilled");

        let one = principal(Quota { concurrent: Some(1), ..Quota::default() });
        let running = quotas.admit(&one, "p").unwrap();
        assert_eq!(quotas.admit(&one, "p").err().unwrap().limit, "concurrent");
        drop(running);
        assert!(quotas.admit(&one, "p").is_ok());

        let budget = principal(Quota { budget: Some(3), budget_period_secs: Some(3600), ..Quota::default() });
        for _ in 0..3 {
            drop(quotas.admit(&budget, "q").unwrap());
        }
        let refused = quotas.admit(&budget, "q").err().unwrap();
        assert_eq!(refused.limit, "budget");
        // A batch of 3 rows uses 3 of a budget of 3.
        let admitted = quotas.admit(&budget, "batch").unwrap();
        quotas.charge_rows(&budget, "batch", 3);
        drop(admitted);
        assert_eq!(quotas.admit(&budget, "batch").err().unwrap().limit, "budget");
        assert!(refused.retry_after > Duration::from_secs(3500) && refused.message.contains("budget of 3"));
    }
}

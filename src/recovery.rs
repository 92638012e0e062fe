//! The recovery task every replica runs: it finds orders left `pending` by a request that
//! died, timed out or lost the storage, and drives each to an end (see
//! [`OrderService::recover`]). Replicas need not agree on who recovers what: every step of
//! settling an order is idempotent or compare-and-set, so two replicas recovering the same
//! order reach the same end.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use chrono::Utc;
use tracing::Instrument;

use crate::{
    domain::{orders::OrderService, storage::OrderStore},
    telemetry::ErrorChain,
    trace::{self, RequestContext, TraceContext},
};

/// When an order counts as stuck, and how often to look for stuck orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Age after which a pending order is recovered (`RECOVERY_AFTER`). Far above the time a
    /// live request takes, so that recovery seldom races a request still at work (and a race
    /// is harmless).
    pub after: Duration,
    /// Time between two scans (`RECOVERY_PERIOD`).
    pub period: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(30),
            period: Duration::from_secs(10),
        }
    }
}

/// Scans for stuck orders every `config.period` until the service that `orders` belongs to
/// is dropped, which is how the task ends with the server.
pub async fn run<S: OrderStore>(orders: Weak<OrderService<S>>, config: RecoveryConfig) {
    // Replicas started together would otherwise scan in step, each racing the others for
    // the same orders.
    let first = config.period.mul_f64(fastrand::f64());
    tokio::time::sleep(first).await;
    loop {
        let Some(orders) = orders.upgrade() else {
            return;
        };
        // Each round is a trace of its own, so that its calls can be found in the Storage
        // Service's log as a request's can.
        let span = tracing::info_span!(
            "recovery",
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let trace = trace::exported(&span, TraceContext::new_trace());
        trace.record(&span);
        let context = RequestContext::new(trace, None);
        trace::within(context, round(&orders, config))
            .instrument(span)
            .await;
        drop(orders);
        tokio::time::sleep(config.period).await;
    }
}

async fn round<S: OrderStore>(orders: &Arc<OrderService<S>>, config: RecoveryConfig) {
    let Ok(after) = chrono::Duration::from_std(config.after) else {
        return;
    };
    match orders.recover(Utc::now() - after).await {
        Ok(recovery) if recovery.settled == 0 && recovery.left_pending == 0 => {}
        Ok(recovery) => tracing::info!(
            settled = recovery.settled,
            left_pending = recovery.left_pending,
            "recovery round"
        ),
        Err(err) => {
            tracing::warn!(error = %ErrorChain(&err), "cannot look for pending orders; trying again next period");
        }
    }
}

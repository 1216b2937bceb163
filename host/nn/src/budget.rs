//! Host memory a step holds through `wasi:nn`. A tensor the guest creates is
//! a host-side copy of guest memory, and graphs, execution contexts, outputs
//! and errors live on the host too: none of it is in the step's linear
//! memory, so the memory limiter never sees it. Every such resource is
//! charged here when created and released when dropped; a charge past the
//! step's limit fails the invocation (a trap naming the cause).

use thiserror::Error;

/// What each resource costs beyond its data: the table entry, the handle,
/// the bookkeeping. Also what bounds the number of resources a step may hold.
pub const RESOURCE_OVERHEAD: u64 = 256;

/// The invocation is failed with this (as a trap) when a charge would pass
/// the limit.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error(
    "the step's wasi:nn resources would hold {wanted} bytes of host memory ({what}), over its limit of {limit} \
     bytes (the step's memory limit); drop tensors, contexts and outputs it no longer needs, or raise `memory`"
)]
pub struct HostMemoryExceeded {
    pub what: &'static str,
    pub wanted: u64,
    pub limit: u64,
}

/// One step's host-side charges.
#[derive(Debug, Clone)]
pub struct HostBudget {
    limit: u64,
    held: u64,
    peak: u64,
}

impl HostBudget {
    pub fn new(limit: u64) -> HostBudget {
        HostBudget { limit, held: 0, peak: 0 }
    }

    /// Charge a resource of `bytes` (plus the per-resource overhead) for `what`.
    pub fn charge(&mut self, what: &'static str, bytes: u64) -> Result<(), HostMemoryExceeded> {
        let wanted = self.held.saturating_add(bytes.saturating_add(RESOURCE_OVERHEAD));
        if wanted > self.limit {
            return Err(HostMemoryExceeded { what, wanted, limit: self.limit });
        }
        self.held = wanted;
        self.peak = self.peak.max(wanted);
        Ok(())
    }

    /// Give back what a dropped resource of `bytes` was charged.
    pub fn release(&mut self, bytes: u64) {
        self.held = self.held.saturating_sub(bytes.saturating_add(RESOURCE_OVERHEAD));
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The most held at once.
    pub fn peak(&self) -> u64 {
        self.peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_release_gives_back() {
        let mut budget = HostBudget::new(10_000);
        budget.charge("a tensor", 4_000).unwrap();
        budget.charge("a tensor", 4_000).unwrap();
        let err = budget.charge("a tensor", 4_000).unwrap_err();
        assert_eq!(err.limit, 10_000);
        assert!(err.to_string().contains("a tensor") && err.to_string().contains("memory limit"), "{err}");
        budget.release(4_000);
        budget.charge("a tensor", 4_000).unwrap();
        budget.release(4_000);
        assert_eq!(budget.held(), 4_000 + RESOURCE_OVERHEAD);
        assert_eq!(budget.peak(), 2 * (4_000 + RESOURCE_OVERHEAD));
        assert!(budget.charge("huge", u64::MAX).is_err(), "no overflow");
    }
}

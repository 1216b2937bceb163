//! Invocation and job ids.

use std::sync::atomic::{AtomicU64, Ordering};

/// A new id: time, process and a counter, unique per host.
pub fn new_invocation_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = crate::clock::unix_nanos() as u64;
    format!("{nanos:016x}-{:08x}-{:08x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    #[test]
    fn invocation_ids_are_unique() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| super::new_invocation_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}

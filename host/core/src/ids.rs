//! Invocation and job ids: 128 random bits, so that knowing one id (or when
//! and where it was made) tells nothing about any other.

/// A new id: 32 hex digits from a cryptographic generator (ChaCha12,
/// seeded and reseeded from the operating system's), per thread: one is
/// made per request, and a system call each would cost more than the id.
pub fn new_invocation_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// This process's id in answers that say which host did the work (a NATS
/// result's `Weir-Instance` header): random, made once.
pub fn instance_id() -> &'static str {
    static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| crate::secret::random_hex128()[..16].to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn invocation_ids_are_unique_and_random() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| super::new_invocation_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
        // No shared prefix (time) or middle (pid): the first 8 digits vary.
        let prefixes: std::collections::HashSet<&str> = ids.iter().map(|id| &id[..8]).collect();
        assert!(prefixes.len() > 990);
    }
}

//! Unguessable values: random bytes from the operating system's generator,
//! and comparisons of secrets that take the same time whatever they hold.

/// `N` bytes from the operating system's cryptographic generator.
///
/// # Panics
/// When the operating system cannot give random bytes (no `getrandom(2)`,
/// no `/dev/urandom`): nothing unguessable can be made then, and going on
/// with predictable ids or keys would be worse than stopping.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the operating system's random generator is unavailable");
    bytes
}

/// 128 random bits as 32 lowercase hex digits.
pub fn random_hex128() -> String {
    hex::encode(random_bytes::<16>())
}

/// Whether `a == b`, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_differ_and_compare() {
        let (a, b) = (random_hex128(), random_hex128());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), b.as_bytes()));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}

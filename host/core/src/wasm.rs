//! Telling WebAssembly binaries apart by their header.

/// What a binary's first eight bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// Not WebAssembly at all (no `\0asm` magic).
    NotWasm,
    /// A core module (version 1): not a component.
    CoreModule,
    /// A component (any other version/layer).
    Component,
}

const MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

impl WasmKind {
    pub fn of(bytes: &[u8]) -> WasmKind {
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            WasmKind::NotWasm
        } else if bytes[4..8] == CORE_MODULE_VERSION {
            WasmKind::CoreModule
        } else {
            WasmKind::Component
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert_eq!(WasmKind::of(b"hello world"), WasmKind::NotWasm);
        assert_eq!(WasmKind::of(b"\0asm\x01\0\0\0"), WasmKind::CoreModule);
        assert_eq!(WasmKind::of(b"\0asm\x0d\0\x01\0"), WasmKind::Component);
    }
}

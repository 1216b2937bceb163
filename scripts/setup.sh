#!/usr/bin/env bash
# Installs what weir's build, demo and tests need, idempotently: each piece is
# skipped when already present. Safe to run on every CI run.
#
#   - the Rust Wasm targets (wasm32-wasip2, wasm32-wasip1) via rustup
#   - cargo-component (builds the guest components), wkg (registry interop tests)
#   - the ONNX Runtime shared library, taken from the PyPI wheel
#   - on x86-64: the aarch64 cross toolchain, qemu-user and aarch64 ONNX Runtime
#   - the Debian packages the build and tests use
#   - a Python environment with the unmodified Open Inference Protocol
#     clients the interoperability tests drive (tritonclient, gRPC and HTTP)
#
# Knobs: WEIR_ORT_VERSION (default 1.22.1), WEIR_DATA_DIR (default
# ${XDG_DATA_HOME:-$HOME/.local/share}/weir), WEIR_WASM_TOOLCHAIN=debian (use
# the Debian fallback for the Wasm targets even where rustup works).
set -euo pipefail

CARGO_COMPONENT_VERSION=0.21.1
ORT_VERSION="${WEIR_ORT_VERSION:-1.22.1}"
DATA_DIR="${WEIR_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/weir}"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

# --- Debian packages -------------------------------------------------------
# docker-registry, skopeo and apache2-utils (htpasswd): the OCI tests' real
# registry and interop tool; nats-server: the queue tests' broker (JetStream);
# libssl-dev: TLS for the registry client; openssl: the HTTPS test's certificates;
# chromium + chromium-driver: the console's tests drive a real headless browser;
# wrk: the load generator of the layered benchmark CI runs (scripts/bench-layered.sh).
apt_packages=(build-essential pkg-config python3 python3-pip python3-venv ca-certificates curl libssl-dev openssl
  docker-registry skopeo buildah apache2-utils nats-server chromium chromium-driver wrk)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package's own service listens on every interface; tests start their
  # own registry on loopback, so keep the packaged one off.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    for service in docker-registry nats-server; do
      if [[ " ${missing[*]} " == *" $service "* ]]; then as_root systemctl disable --now "$service" >/dev/null 2>&1 || true; fi
    done
  fi
fi

# --- Rust and the Wasm targets --------------------------------------------
command -v cargo >/dev/null || { say "cargo not found: install Rust with rustup first (https://rustup.rs)"; exit 1; }
guest_env="$DATA_DIR/guest-build.env"

# Fallback for machines where rustup cannot download the Wasm targets: Debian's
# rustc-web (with its std source), wasi-libc and lld, arranged as a sysroot,
# and guests built with build-std. The env file tells every guest build
# (tests/build.rs, scripts/build-components.sh) to use it.
wasm_from_debian() {
  say "using Debian's Rust and wasi-libc for Wasm guests (build-std)"
  local pkgs=(rustc-web cargo-web rust-web-src libstd-rust-web-dev wasi-libc lld-22)
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  local sysroot="$DATA_DIR/wasm-sysroot" host=x86_64-unknown-linux-gnu
  rm -rf "$sysroot"
  mkdir -p "$sysroot/bin" "$sysroot/lib/rustlib/$host/bin"
  printf '#!/bin/sh\nexec /usr/bin/rustc --sysroot %s "$@"\n' "$sysroot" >"$sysroot/bin/rustc"
  printf '#!/bin/sh\nexec /usr/bin/rustdoc --sysroot %s "$@"\n' "$sysroot" >"$sysroot/bin/rustdoc"
  chmod +x "$sysroot/bin/rustc" "$sysroot/bin/rustdoc"
  ln -s /usr/bin/cargo "$sysroot/bin/cargo"
  ln -s /usr/lib/rustlib/src "$sysroot/lib/rustlib/src"
  ln -s "/usr/lib/rustlib/$host/lib" "$sysroot/lib/rustlib/$host/lib"
  ln -s /usr/lib/llvm-22/bin/lld "$sysroot/lib/rustlib/$host/bin/rust-lld"
  ln -s /usr/lib/llvm-22/bin/wasm-ld "$sysroot/lib/rustlib/$host/bin/wasm-ld"
  for target in wasm32-wasip1 wasm32-wasip2; do
    mkdir -p "$sysroot/lib/rustlib/$target/lib/self-contained"
    ln -s /usr/lib/wasm32-wasi/* "$sysroot/lib/rustlib/$target/lib/self-contained/"
  done
  mkdir -p "$DATA_DIR"
  cat >"$guest_env" <<ENV
CARGO=/usr/bin/cargo
RUSTC=$sysroot/bin/rustc
RUSTDOC=$sysroot/bin/rustdoc
RUSTC_BOOTSTRAP=1
CARGO_UNSTABLE_BUILD_STD=std,panic_abort
ENV
}

if [ "${WEIR_WASM_TOOLCHAIN:-rustup}" = debian ]; then
  wasm_from_debian
else
  installed_targets=$(rustup target list --installed 2>/dev/null || true)
  for target in wasm32-wasip2 wasm32-wasip1; do
    if ! grep -qx "$target" <<<"$installed_targets"; then
      say "adding Rust target $target"
      if ! rustup target add "$target"; then
        say "rustup could not add $target; falling back to Debian's packages"
        wasm_from_debian
        break
      fi
    fi
  done
  # rustup works: guests use the normal toolchain.
  if grep -qx wasm32-wasip1 <<<"$(rustup target list --installed 2>/dev/null)"; then
    rm -f "$guest_env"
  fi
fi

# rustfmt and clippy enforce the house rules (scripts/test.sh, scripts/lint.sh).
installed_components=$(rustup component list --installed 2>/dev/null || true)
for component in rustfmt clippy; do
  if ! grep -q "^$component" <<<"$installed_components"; then
    say "adding Rust component $component"
    rustup component add "$component" || say "could not add $component (the house-rule checks need it)"
  fi
done

# --- cargo-component -------------------------------------------------------
# Both tools are built unoptimised and without debug info: cargo-component's
# release profile asks for LTO with one codegen unit, which takes minutes
# longer to build, and neither tool's speed shows in a build or a test (the
# guests they build are byte for byte the same).
tool_install() { CARGO_PROFILE_DEV_DEBUG=false cargo install --debug --locked --quiet "$@"; }
if ! cargo component --version 2>/dev/null | grep -q "$CARGO_COMPONENT_VERSION"; then
  say "building cargo-component $CARGO_COMPONENT_VERSION from crates.io (takes several minutes once)"
  tool_install "cargo-component@$CARGO_COMPONENT_VERSION"
fi

# --- wkg ------------------------------------------------------------------
# The Bytecode Alliance's Wasm package tool: the registry interop tests pull
# what weir pushes with it, and run what it pushed.
WKG_VERSION=0.16.1
if ! wkg --version 2>/dev/null | grep -qx "wkg $WKG_VERSION"; then
  say "building wkg $WKG_VERSION from crates.io (takes several minutes once)"
  tool_install "wkg@$WKG_VERSION"
fi

# --- ONNX Runtime from the PyPI wheel -------------------------------------
# fetch_ort DIR [pip platform options]: the wheel's libonnxruntime.so into DIR.
fetch_ort() {
  local dir=$1 lib="$1/libonnxruntime.so.$ORT_VERSION"
  shift
  [ -f "$lib" ] && return 0
  say "fetching ONNX Runtime $ORT_VERSION (PyPI wheel${1:+, $*}) into $dir"
  local tmp
  tmp=$(mktemp -d)
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: "$@" "onnxruntime==$ORT_VERSION" -d "$tmp"; then
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$dir"
  python3 - "$tmp" "$dir" <<'PY'
import glob, os, shutil, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(src, "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    libs = [n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so")]
    if not libs:
        sys.exit(f"no libonnxruntime.so in {wheel}")
    for name in libs:
        with z.open(name) as f, open(os.path.join(dest, os.path.basename(name)), "wb") as out:
            shutil.copyfileobj(f, out)
PY
  rm -rf "$tmp"
  ln -sf "$(basename "$lib")" "$dir/libonnxruntime.so"
}
ort_dir="$DATA_DIR/onnxruntime-$ORT_VERSION"
ort_lib="$ort_dir/libonnxruntime.so.$ORT_VERSION"
fetch_ort "$ort_dir"
ln -sfn "$ort_dir" "$DATA_DIR/onnxruntime"

# --- AArch64: cross build and emulation (scripts/cross-build.sh) -----------
# The edge test builds weir for aarch64 with Debian's cross compiler and the
# arm64 OpenSSL (multiarch), and runs it under qemu-aarch64 with the aarch64
# ONNX Runtime of the same wheel release.
aarch64_cross() {
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    say "adding Debian's arm64 architecture (cross libraries)"
    as_root dpkg --add-architecture arm64 || return 1
    as_root apt-get update -qq || return 1
  fi
  local pkg cross_missing=()
  for pkg in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libssl-dev:arm64; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || cross_missing+=("$pkg")
  done
  if [ ${#cross_missing[@]} -gt 0 ]; then
    say "installing the aarch64 cross toolchain: ${cross_missing[*]}"
    as_root apt-get update -qq || return 1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${cross_missing[@]}" >/dev/null || return 1
  fi
  if ! grep -qx aarch64-unknown-linux-gnu <<<"$(rustup target list --installed 2>/dev/null)"; then
    say "adding Rust target aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu || return 1
  fi
  fetch_ort "$DATA_DIR/onnxruntime-$ORT_VERSION-aarch64" \
    --platform manylinux_2_27_aarch64 --implementation cp --python-version 3.11 --abi cp311 || return 1
  ln -sfn "$DATA_DIR/onnxruntime-$ORT_VERSION-aarch64" "$DATA_DIR/onnxruntime-aarch64"
}
# Best effort: the rest of the set-up does not depend on it; the aarch64
# test says what is missing (and fails under CI=true).
if [ "$(uname -m)" = x86_64 ] && ! aarch64_cross; then
  say "could not set up the aarch64 cross build; the aarch64 tests will say what is missing"
fi

# --- Open Inference Protocol clients (interoperability tests) --------------
# tritonclient as users install it, in its own environment (Debian's Python
# refuses system-wide pip installs); the tests find it at $DATA_DIR/pyenv.
TRITONCLIENT_VERSION=2.73.0
pyenv="$DATA_DIR/pyenv"
if ! "$pyenv/bin/python" -c "import tritonclient.grpc, tritonclient.http, numpy" 2>/dev/null ||
  ! "$pyenv/bin/pip" show tritonclient 2>/dev/null | grep -qx "Version: $TRITONCLIENT_VERSION"; then
  say "installing tritonclient $TRITONCLIENT_VERSION (gRPC and HTTP) into $pyenv"
  python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install --quiet "tritonclient[grpc,http]==$TRITONCLIENT_VERSION" numpy
fi

# Data tools for the export and retraining tests, as a data scientist has
# them: pyarrow reads weir's Parquet exports, onnx writes a retrained model.
PYARROW_VERSION=26.0.1
ONNX_VERSION=1.23.2
if ! "$pyenv/bin/python" -c "import pyarrow.parquet, onnx, numpy" 2>/dev/null ||
  ! "$pyenv/bin/pip" show pyarrow 2>/dev/null | grep -qx "Version: $PYARROW_VERSION"; then
  say "installing pyarrow $PYARROW_VERSION and onnx $ONNX_VERSION into $pyenv"
  "$pyenv/bin/pip" install --quiet "pyarrow==$PYARROW_VERSION" "onnx==$ONNX_VERSION" numpy
fi

# ORAS's Python SDK pulls what `weir push` writes, as ORAS users would.
ORAS_PY_VERSION=0.2.43
if ! "$pyenv/bin/python" -c "import oras.client" 2>/dev/null ||
  ! "$pyenv/bin/pip" show oras 2>/dev/null | grep -qx "Version: $ORAS_PY_VERSION"; then
  say "installing oras (ORAS's Python SDK) $ORAS_PY_VERSION into $pyenv"
  "$pyenv/bin/pip" install --quiet "oras==$ORAS_PY_VERSION"
fi

# Kubernetes manifests are validated offline (scripts/validate-deploy.py):
# kubernetes-validate carries the Kubernetes OpenAPI schemas; kustomize
# comes with kubectl (Debian's kubernetes-client, unless a kubectl is here).
KUBERNETES_VALIDATE_VERSION=1.37.0
if ! "$pyenv/bin/python" -c "import kubernetes_validate, yaml, jsonschema" 2>/dev/null ||
  ! "$pyenv/bin/pip" show kubernetes-validate 2>/dev/null | grep -qx "Version: $KUBERNETES_VALIDATE_VERSION"; then
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $pyenv"
  "$pyenv/bin/pip" install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
if ! command -v kubectl >/dev/null; then
  say "installing kubectl (Debian's kubernetes-client) for kustomize"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi

say "ready: $(rustc --version), $(cargo component --version), ONNX Runtime at $ort_lib"
[ -f "$guest_env" ] && say "guests build with Debian's toolchain (settings in $guest_env)"
exit 0

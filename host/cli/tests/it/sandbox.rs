//! Hostile components against one long-lived runtime: every misbehaviour ends
//! as a clear error for that invocation, and the same runtime then still
//! serves a normal invocation correctly.

use std::time::{Duration, Instant};

use crate::common::{config, f32_tensor, f32_values, only_string};
use weir_sandbox::{EngineOptions, InvokeError, Sandbox, SandboxOptions, StepComponent, StepLimits};
use weir_tests::{HOSTILE, SCALE};

fn runtime(fuel: bool) -> Sandbox {
    Sandbox::new(SandboxOptions {
        engine: EngineOptions { max_instances: 8, fuel, ..EngineOptions::default() },
        cache_dir: Some(crate::common::shared_cache_dir()),
        ..SandboxOptions::default()
    })
    .unwrap()
}

fn limits() -> StepLimits {
    StepLimits { memory_bytes: 64 << 20, timeout: Duration::from_millis(500), fuel: None }
}

async fn hostile(
    runtime: &Sandbox,
    component: &StepComponent,
    mode: &str,
    extra: &[(&str, &str)],
) -> Result<weir_sandbox::StepOutput, InvokeError> {
    let mut pairs = vec![("mode", mode)];
    pairs.extend_from_slice(extra);
    runtime.invoke(component, "hostile", &config(&pairs), &limits(), vec![f32_tensor("x", &[1], &[1.0])]).await
}

/// The normal invocation that must still work after each attack.
async fn assert_still_serves(runtime: &Sandbox, scale: &StepComponent) {
    let out = runtime
        .invoke(
            scale,
            "scale",
            &config(&[("mean", "1"), ("std", "2")]),
            &limits(),
            vec![f32_tensor("x", &[1, 3], &[1.0, 3.0, 5.0])],
        )
        .await
        .expect("normal invocation after an attack");
    assert_eq!(f32_values(&out.outputs[0]), vec![0.0, 1.0, 2.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_contained_and_the_host_keeps_serving() {
    let runtime = runtime(false);
    let bad = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let scale = runtime.load_file(SCALE.as_ref()).unwrap();

    let started = Instant::now();
    let err = hostile(&runtime, &bad, "infinite-loop", &[]).await.unwrap_err();
    assert!(matches!(err, InvokeError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out after 500ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout took {:?}", started.elapsed());
    assert_still_serves(&runtime, &scale).await;

    let started = Instant::now();
    let err = hostile(&runtime, &bad, "sleep", &[]).await.unwrap_err();
    assert!(matches!(err, InvokeError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "a sleeping guest held the call for {:?}", started.elapsed());
    assert_still_serves(&runtime, &scale).await;

    let err = hostile(&runtime, &bad, "memory-bomb", &[]).await.unwrap_err();
    assert!(matches!(err, InvokeError::MemoryLimit { limit, .. } if limit == 64 << 20), "{err}");
    assert_still_serves(&runtime, &scale).await;

    let err = hostile(&runtime, &bad, "stack-overflow", &[]).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Trap { message, .. } if message.contains("stack overflow")), "{err}");
    assert_still_serves(&runtime, &scale).await;

    // Rust keeps big frames on a shadow stack in linear memory; running
    // off its end is an out-of-bounds access, still only this call's trap.
    let err = hostile(&runtime, &bad, "shadow-stack-overflow", &[]).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Trap { message, .. } if message.contains("out of bounds")), "{err}");
    assert_still_serves(&runtime, &scale).await;

    let err = hostile(&runtime, &bad, "panic", &[]).await.unwrap_err();
    let InvokeError::Trap { message, .. } = &err else { panic!("expected a trap, got {err}") };
    assert!(message.contains("hostile guest panics on purpose"), "the panic message is kept: {message}");
    assert_still_serves(&runtime, &scale).await;

    let err = hostile(&runtime, &bad, "malformed-output", &[]).await.unwrap_err();
    assert!(matches!(err, InvokeError::MalformedOutput { .. }), "{err}");
    assert!(err.to_string().contains("needs 16 bytes of data, got 12"), "{err}");
    assert_still_serves(&runtime, &scale).await;
}

#[tokio::test]
async fn files_environment_and_sockets_are_denied_inside_the_guest() {
    let runtime = runtime(false);
    let bad = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let scale = runtime.load_file(SCALE.as_ref()).unwrap();

    // A file that certainly exists on the host.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "secret").unwrap();
    let path = secret.path().to_str().unwrap();
    for target in [path, "/etc/passwd", "."] {
        let out = hostile(&runtime, &bad, "read-file", &[("path", target)]).await.unwrap();
        let outcome = only_string(&out.outputs[0]);
        assert!(outcome.starts_with("denied:"), "reading {target}: {outcome}");
    }

    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("WEIR_TEST_SECRET", "hunter2") };
    let out = hostile(&runtime, &bad, "read-env", &[("var", "WEIR_TEST_SECRET")]).await.unwrap();
    let outcome = only_string(&out.outputs[0]);
    assert!(outcome.starts_with("denied:"), "{outcome}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let out = hostile(&runtime, &bad, "socket", &[("addr", &addr)]).await.unwrap();
    let outcome = only_string(&out.outputs[0]);
    assert!(outcome.starts_with("denied:"), "{outcome}");
    assert!(listener.accept().is_err(), "the guest reached the listener");
    assert_still_serves(&runtime, &scale).await;
}

/// A step granted a directory reads exactly that directory (read-only, no
/// way out through `..` or a symlink), and sees exactly the variables it
/// was granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_directories_and_variables_are_all_a_step_sees() {
    let runtime = runtime(false);
    let bad = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("vocab.txt"), "hello").unwrap();
    std::fs::write(root.path().join("secret.txt"), "hunter2").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), data.join("escape")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", data.join("relative-escape")).unwrap();
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("WEIR_TEST_HOST_ONLY", "host-secret") };
    let run = |mode: &str, key: &str, value: &str| {
        let grants = weir_core::StepGrants {
            dirs: vec![weir_core::DirGrant { host: data.clone(), guest: "/data".into() }],
            env: vec![("GREETING".into(), "hi".into())],
            ..config(&[("mode", mode), (key, value)])
        };
        let runtime = &runtime;
        let bad = &bad;
        async move {
            let out = runtime.invoke(bad, "hostile", &grants, &limits(), vec![f32_tensor("x", &[1], &[1.0])]).await;
            only_string(&out.unwrap().outputs[0])
        }
    };
    assert_eq!(run("read-file", "path", "/data/vocab.txt").await, "LEAKED: read 5 bytes of /data/vocab.txt");
    for escape in ["/data/../secret.txt", "/data/escape", "/data/relative-escape", "/secret.txt", "/etc/passwd"] {
        let outcome = run("read-file", "path", escape).await;
        assert!(outcome.starts_with("denied:"), "reading {escape}: {outcome}");
    }
    assert_eq!(run("read-env", "var", "GREETING").await, "LEAKED: GREETING=hi");
    let outcome = run("read-env", "var", "WEIR_TEST_HOST_ONLY").await;
    assert!(outcome.contains("GREETING") && !outcome.contains("host-secret") && !outcome.contains("HOME"), "{outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_step_does_not_block_other_invocations() {
    let runtime = std::sync::Arc::new(runtime(false));
    let bad = std::sync::Arc::new(runtime.load_file(HOSTILE.as_ref()).unwrap());
    let scale = runtime.load_file(SCALE.as_ref()).unwrap();
    let (rt, component) = (runtime.clone(), bad.clone());
    let looping = tokio::spawn(async move {
        let limits = StepLimits { timeout: Duration::from_secs(3), ..limits() };
        rt.invoke(&component, "hostile", &config(&[("mode", "infinite-loop")]), &limits, vec![]).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    assert_still_serves(&runtime, &scale).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a normal call waited {:?} behind a runaway one",
        started.elapsed()
    );
    assert!(!looping.is_finished(), "the runaway step should still be running");
    assert!(matches!(looping.await.unwrap(), Err(InvokeError::Timeout { .. })));
}

/// The epoch thread parks when no guest has run for a while (an idle host
/// does not wake for nothing); a runaway guest that starts on such a host
/// must still be stopped at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_guest_is_stopped_after_the_host_was_idle() {
    let runtime = runtime(false);
    let bad = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let scale = runtime.load_file(SCALE.as_ref()).unwrap();
    let idle_since = Instant::now();
    while !runtime.engine().ticker_parked() {
        assert!(idle_since.elapsed() < Duration::from_secs(10), "the epoch thread never parked on an idle host");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let err = hostile(&runtime, &bad, "infinite-loop", &[]).await.unwrap_err();
    assert!(matches!(err, InvokeError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout took {:?}", started.elapsed());
    assert_still_serves(&runtime, &scale).await;
}

#[tokio::test]
async fn no_state_crosses_invocations() {
    let runtime = runtime(false);
    let bad = runtime.load_file(HOSTILE.as_ref()).unwrap();
    for _ in 0..3 {
        let out = hostile(&runtime, &bad, "counter", &[]).await.unwrap();
        assert_eq!(out.outputs[0].data, 1u64.to_le_bytes(), "a fresh instance per invocation counts from zero");
    }
}

#[tokio::test]
async fn step_output_is_captured_as_tagged_log_lines() {
    let runtime = runtime(false);
    let bad = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let out = hostile(&runtime, &bad, "chatty", &[]).await.unwrap();
    let lines: Vec<(weir_sandbox::logs::LogStream, &str)> =
        out.logs.iter().map(|l| (l.stream, l.line.as_str())).collect();
    assert_eq!(
        lines,
        vec![
            (weir_sandbox::logs::LogStream::Stdout, "hello from stdout"),
            (weir_sandbox::logs::LogStream::Stderr, "hello from stderr")
        ]
    );
}

/// A step that writes 4 MiB to stdout keeps at most 256 KiB in host memory;
/// past that its writes fail (it is told, not the host flooded), and the
/// same runtime serves the next call.
#[tokio::test]
async fn step_output_is_capped_at_256_kib() {
    let runtime = runtime(false);
    let bad = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let out = hostile(&runtime, &bad, "flood", &[]).await.unwrap();
    let kept: usize = out.logs.iter().map(|l| l.line.len() + 1).sum();
    assert!(kept <= weir_sandbox::invoke::LOG_CAPACITY, "{kept} bytes of logs kept");
    assert!(kept >= weir_sandbox::invoke::LOG_CAPACITY - 1024, "the first 256 KiB are kept: {kept}");
    let said = crate::common::only_string(&out.outputs[0]);
    let written: usize = said.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(written <= weir_sandbox::invoke::LOG_CAPACITY && said.contains("refused: Some("), "{said}");
    let scale = runtime.load_file(SCALE.as_ref()).unwrap();
    assert_still_serves(&runtime, &scale).await;
}

#[tokio::test]
async fn fuel_limits_guest_instructions() {
    let runtime = runtime(true);
    let bad = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let limits = StepLimits { fuel: Some(5_000_000), timeout: Duration::from_secs(30), ..limits() };
    let err =
        runtime.invoke(&bad, "hostile", &config(&[("mode", "infinite-loop")]), &limits, vec![]).await.unwrap_err();
    assert!(matches!(err, InvokeError::FuelExhausted { limit: 5_000_000, .. }), "{err}");
    let ok = runtime.invoke(&bad, "hostile", &config(&[("mode", "echo")]), &limits, vec![]).await.unwrap();
    let used = ok.stats.fuel_consumed.expect("fuel is counted");
    assert!(used > 0 && used < 5_000_000, "{used}");

    let no_fuel = self::runtime(false);
    let bad = no_fuel.load_file(HOSTILE.as_ref()).unwrap();
    let err = no_fuel.invoke(&bad, "hostile", &config(&[("mode", "echo")]), &limits, vec![]).await.unwrap_err();
    assert!(matches!(err, InvokeError::FuelNotEnabled { .. }), "{err}");
}

#[tokio::test]
async fn compiled_components_are_cached_by_digest() {
    let cache = tempfile::tempdir().unwrap();
    let options = SandboxOptions { cache_dir: Some(cache.path().into()), ..SandboxOptions::default() };
    let first = Sandbox::new(options.clone()).unwrap().load_file(SCALE.as_ref()).unwrap();
    assert_eq!(first.load.compile_source, weir_sandbox::compiled::CompileSource::Compiled);
    let second = Sandbox::new(options).unwrap().load_file(SCALE.as_ref()).unwrap();
    assert_eq!(
        second.load.compile_source,
        weir_sandbox::compiled::CompileSource::Cache,
        "a second process must not recompile"
    );
    assert_eq!(first.digest, second.digest);
    assert!(second.load.compile_time < first.load.compile_time);
}

//! Outgoing HTTP grants (`wasi:http`): a step reaches exactly the hosts and
//! ports it was granted, and nothing else — not another port, not a host a
//! granted one redirects to, not a name that resolves to loopback unless the
//! grant says so, never a link-local address.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{config, f32_tensor, only_string};
use weir_core::{HttpGrant, StepGrants};
use weir_sandbox::{EgressEvent, Sandbox, SandboxOptions, StepComponent, StepLimits};
use weir_tests::HOSTILE;

/// A small HTTP/1.1 server on loopback: `/hello` answers 200 with a body,
/// `/redirect?to=URL` answers 302 to URL; it counts the requests it got.
struct FeatureStore {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl FeatureStore {
    fn start() -> FeatureStore {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut head).is_err() {
                    continue;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let response = if let Some(to) = path.strip_prefix("/redirect?to=") {
                    format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                } else {
                    let body = format!("features for {path}");
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                };
                let _ = stream.write_all(response.as_bytes());
            }
        });
        FeatureStore { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn grant(host: &str, port: u16, loopback: bool) -> HttpGrant {
    HttpGrant { host: host.into(), port, loopback }
}

async fn get(
    runtime: &Sandbox,
    component: &StepComponent,
    grants: &[HttpGrant],
    url: &str,
    follow: u32,
) -> (String, Vec<EgressEvent>) {
    let follow = follow.to_string();
    let grants =
        StepGrants { http: grants.to_vec(), ..config(&[("mode", "http-get"), ("url", url), ("follow", &follow)]) };
    let limits = StepLimits { memory_bytes: 64 << 20, timeout: Duration::from_secs(10), fuel: None };
    let out = runtime.invoke(component, "hostile", &grants, &limits, vec![f32_tensor("x", &[1], &[1.0])]).await;
    let out = out.expect("the step itself succeeds and reports what happened");
    (only_string(&out.outputs[0]), out.stats.egress)
}

fn runtime() -> Sandbox {
    Sandbox::new(SandboxOptions { cache_dir: Some(crate::common::shared_cache_dir()), ..SandboxOptions::default() })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_calls_exactly_the_hosts_it_was_granted() {
    let runtime = runtime();
    let step = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let granted = FeatureStore::start();
    let other = FeatureStore::start();
    let hello = format!("http://127.0.0.1:{}/hello", granted.port);
    let sidecar = [grant("127.0.0.1", granted.port, true)];

    // No grant: denied, and the server never hears of it.
    let (outcome, events) = get(&runtime, &step, &[], &hello, 0).await;
    assert!(outcome.starts_with("denied:") && outcome.contains("not granted"), "{outcome}");
    assert!(matches!(&events[..], [EgressEvent::Refused { reason, .. }] if reason.contains("not among")), "{events:?}");
    assert_eq!(granted.hits(), 0);

    // Granted: the call goes through and the body comes back.
    let (outcome, events) = get(&runtime, &step, &sidecar, &hello, 0).await;
    assert_eq!(outcome, "LEAKED: 200 features for /hello");
    assert_eq!(events, vec![EgressEvent::Sent { authority: format!("127.0.0.1:{}", granted.port) }]);
    assert_eq!(granted.hits(), 1);

    // The same host on a port not granted.
    let elsewhere = format!("http://127.0.0.1:{}/hello", other.port);
    let (outcome, _) = get(&runtime, &step, &sidecar, &elsewhere, 0).await;
    assert!(outcome.starts_with("denied:"), "{outcome}");

    // A granted host redirects to one that is not: the follow-up is refused.
    let redirect = format!("http://127.0.0.1:{}/redirect?to={elsewhere}", granted.port);
    let (outcome, events) = get(&runtime, &step, &sidecar, &redirect, 1).await;
    assert!(outcome.starts_with("denied:") && outcome.contains(&elsewhere), "{outcome}");
    assert!(matches!(&events[..], [EgressEvent::Sent { .. }, EgressEvent::Refused { .. }]), "{events:?}");
    assert_eq!(granted.hits(), 2);
    assert_eq!(other.hits(), 0, "the host that was not granted was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_addresses_that_lead_inside_are_refused() {
    let runtime = runtime();
    let step = runtime.load_file(HOSTILE.as_ref()).unwrap();
    let store = FeatureStore::start();
    let port = store.port;

    // A granted name that resolves to loopback, without the operator saying so.
    let via_name = format!("http://localhost:{port}/hello");
    let (outcome, events) = get(&runtime, &step, &[grant("localhost", port, false)], &via_name, 0).await;
    assert!(outcome.starts_with("denied:") && outcome.contains("may not reach"), "{outcome}");
    assert!(matches!(&events[..], [EgressEvent::Refused { reason, .. }] if reason.contains("loopback")), "{events:?}");
    // The same for a loopback literal.
    let via_ip = format!("http://127.0.0.1:{port}/hello");
    let (outcome, _) = get(&runtime, &step, &[grant("127.0.0.1", port, false)], &via_ip, 0).await;
    assert!(outcome.starts_with("denied:"), "{outcome}");
    assert_eq!(store.hits(), 0);

    // Link-local (the cloud metadata address) is refused even with `loopback`.
    let metadata = "http://169.254.169.254:80/latest/meta-data/";
    let (outcome, events) = get(&runtime, &step, &[grant("169.254.169.254", 80, true)], metadata, 0).await;
    assert!(outcome.starts_with("denied:"), "{outcome}");
    assert!(
        matches!(&events[..], [EgressEvent::Refused { reason, .. }] if reason.contains("link-local")),
        "{events:?}"
    );

    // With the operator's explicit `loopback = true`, the name works.
    let (outcome, _) = get(&runtime, &step, &[grant("localhost", port, true)], &via_name, 0).await;
    assert_eq!(outcome, "LEAKED: 200 features for /hello");
}

//! Records planted in the store as an instance whose wall clock runs a day ahead would
//! have written them (`store::ahead`): none may stall the fleet or serve a token past
//! its expiry; each counts as absent and is audited once.

use super::failure::Cooldown;
use super::lease::Holder;
use crate::error::Error;
use crate::store::keys::roles;
use crate::testing::{Rig, T0, response};

const DAY_MS: u64 = 86_400_000;

fn ahead_lines(rig: &Rig) -> Vec<String> {
    rig.platform
        .events("token.cache")
        .into_iter()
        .filter_map(|e| e["detail"].as_str().map(str::to_string))
        .filter(|d| d.contains("ahead-of-clock"))
        .collect()
}

fn plant_cooldown(rig: &Rig, until_ms: u64) {
    let key = rig.settings.client_key();
    let cooldown = Cooldown {
        outage: false,
        kind: "oauth".into(),
        error: "invalid_client".into(),
        description: None,
        status: 401,
        until_ms,
    };
    let sealed = rig.sealed_record(&cooldown, &key, roles::FAILURE);
    rig.platform.kv_put(&key.failure(), &sealed);
}

#[test]
fn a_cooldown_dated_a_day_ahead_fails_nobody_and_is_audited_once() {
    let rig = Rig::new(&[]);
    plant_cooldown(&rig, T0 + DAY_MS);
    rig.platform.respond_token("T1", 3600);
    assert_eq!(rig.get().unwrap().token.expose(), "T1");
    // Another miss reads the record again: still ignored, not audited again.
    rig.memory.borrow_mut().remove(&rig.key());
    rig.platform.kv_remove(&rig.key().store_key());
    rig.platform.respond_token("T2", 3600);
    assert_eq!(rig.get().unwrap().token.expose(), "T2");
    let lines = ahead_lines(&rig);
    assert_eq!(lines.len(), 1, "{lines:?}");
    // A day less the 60 s this instance would have written.
    assert!(
        lines[0].contains("failure record dated 86340 s beyond"),
        "{lines:?}"
    );
}

#[test]
fn a_cooldown_a_little_ahead_is_believed_and_said_to_last_at_most_failure_cooldown_secs() {
    let rig = Rig::new(&[]);
    // 400 ms more than this instance's 60 s: a clock a little ahead.
    plant_cooldown(&rig, T0 + 60_400);
    let e = rig.get().unwrap_err();
    assert!(matches!(e, Error::OAuth(_)), "{e}");
    assert!(e.to_string().contains("failing fast for 60 s more"), "{e}");
    // It lapses at its own time, 400 ms (inside the tolerance) after 60 s from here.
    rig.platform.advance(60_000);
    assert!(rig.get().unwrap_err().to_string().contains("for 1 s more"));
    rig.platform.advance(400);
    rig.platform.respond_token("T1", 3600);
    assert_eq!(rig.get().unwrap().token.expose(), "T1");
    assert!(ahead_lines(&rig).is_empty());
}

#[test]
fn a_token_dated_a_day_ahead_is_not_served_past_its_lifetime() {
    let rig = Rig::new(&[]);
    // Issued "tomorrow" for an hour: served as it is, it would be for a day and an hour.
    rig.store_token("from-tomorrow", T0 + DAY_MS, 3600);
    rig.platform.respond_token("T1", 3600);
    assert_eq!(rig.get().unwrap().token.expose(), "T1");
    let lines = ahead_lines(&rig);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("token record dated"), "{lines:?}");
    // Dated 30 s ahead: inside the 60 s skew, which already allows for such a clock.
    let rig = Rig::new(&[]);
    rig.store_token("a-little-ahead", T0 + 30_000, 3600);
    assert_eq!(rig.get().unwrap().token.expose(), "a-little-ahead");
    assert!(rig.platform.sent.borrow().is_empty());
}

#[test]
fn a_slow_instance_keeps_its_own_token_beside_an_entry_dated_ahead_of_it() {
    // This instance fetched t1 and holds it; then an instance whose clock runs a day
    // ahead stored its own token. Past memory_max_age_ms the store is read: its entry
    // is not believed, and says nothing about t1, which is served on.
    let rig = Rig::new(&[]);
    rig.platform.respond_token("t1", 3600);
    assert_eq!(rig.get().unwrap().token.expose(), "t1");
    rig.store_token("from-tomorrow", T0 + DAY_MS, 3600);
    rig.platform.advance(5_000);
    let t = rig.get().unwrap();
    assert_eq!(t.token.expose(), "t1");
    assert_eq!(rig.platform.sent.borrow().len(), 1, "no second fetch");
}

#[test]
fn a_cooldown_up_to_the_skew_ahead_is_believed() {
    // expiry_skew_secs (60) is the clock difference the deployment allows: a
    // cooldown written by a clock 30 s ahead (or read by one 30 s behind) holds.
    let rig = Rig::new(&[]);
    plant_cooldown(&rig, T0 + 60_000 + 30_000);
    let e = rig.get().unwrap_err();
    assert!(e.to_string().contains("failing fast for 60 s more"), "{e}");
    // With a 1 s skew, the same record is not believed.
    let rig = Rig::new(&[("expiry_skew_secs", "1")]);
    plant_cooldown(&rig, T0 + 60_000 + 30_000);
    rig.platform.respond_token("T1", 3600);
    assert_eq!(rig.get().unwrap().token.expose(), "T1");
}

#[test]
fn a_lease_holder_dated_a_day_ahead_holds_nobody_back() {
    let rig = Rig::new(&[]);
    // It holds this slot's counter, with a record that says it started tomorrow.
    let key = rig.key();
    let lease_ms = rig.settings.cache.lease_ms;
    let holder = Holder {
        slot: T0 / lease_ms,
        generation: 0,
        started_ms: T0 + DAY_MS,
    };
    rig.plant_holder_record(&key, holder);
    rig.platform.respond_token("T1", 3600);
    assert_eq!(rig.get().unwrap().token.expose(), "T1");
    // Waited as for a counter nobody backs (at most 500 ms), not for the token
    // request's whole deadline.
    let slept = rig.platform.slept_ms.get();
    assert!(slept <= 500, "waited {slept} ms");
    let lines = ahead_lines(&rig);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("lease record dated 86400 s beyond"),
        "{lines:?}"
    );
}

#[test]
fn a_discovery_document_dated_ahead_is_fetched_again() {
    const ISSUER: &str = "https://login.example.com/t1";
    let rig = Rig::new(&[("token_url", ""), ("issuer", ISSUER)]);
    // Dated just inside a ttl ahead: it would be used for almost two.
    let retired = "https://login.example.com/t1/retired-token";
    let (name, sealed) = rig.sealed_document(ISSUER, retired, T0 + DAY_MS - 1_000);
    rig.platform.kv_put(&name, &sealed);
    rig.platform.respond(Ok(response(
        200,
        &[("content-type", "application/json")],
        &format!(
            r#"{{"issuer":"{ISSUER}","token_endpoint":"{ISSUER}/oauth2/token","token_endpoint_auth_methods_supported":["client_secret_basic"]}}"#
        ),
    )));
    rig.platform.respond_token("T1", 3600);
    assert_eq!(rig.get().unwrap().token.expose(), "T1");
    let sent: Vec<String> = rig
        .platform
        .sent
        .borrow()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path_and_query))
        .collect();
    assert_eq!(
        sent,
        [
            "GET /.well-known/oauth-authorization-server/t1",
            "POST /t1/oauth2/token"
        ]
    );
    let lines = ahead_lines(&rig);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("discovery record"), "{lines:?}");
}

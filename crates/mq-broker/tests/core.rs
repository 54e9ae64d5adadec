//! Scenario tests of the broker core in virtual time (PROTOCOL §6).

use mq_broker::{BrokerCore, CoreConfig};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, ErrorCode, GroupId, HandleFailure, InstanceId, Message, Tag,
    TagFilter, TopicMessage, TopicName, TransCheckImmunity,
};

const SEC: u64 = 1_000;
const DAY: u64 = 86_400_000;

fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}
fn group(s: &str) -> GroupId {
    GroupId::new(s).unwrap()
}
fn msg(body: &str) -> TopicMessage {
    TopicMessage::new(body).unwrap()
}
fn tagged(body: &str, tag: &str) -> TopicMessage {
    msg(body).with_tag(Tag::new(tag).unwrap())
}
fn ordered(body: &str, key: &str) -> TopicMessage {
    msg(body).with_sharding_key(key).unwrap()
}
fn trans(body: &str, secs: u32) -> TopicMessage {
    msg(body).with_trans_check_immunity(TransCheckImmunity::new(secs).unwrap())
}
fn filter(s: &str) -> TagFilter {
    s.parse().unwrap()
}
fn bodies(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(|m| m.body.as_str()).collect()
}
fn handles(msgs: &[Message]) -> Vec<String> {
    msgs.iter().map(|m| m.receipt_handle.to_string()).collect()
}

/// A core with one topic "T" and helpers for the default instance.
struct H {
    core: BrokerCore,
    t: TopicName,
}

impl H {
    fn new() -> Self {
        Self::with(CoreConfig::default())
    }
    fn with(config: CoreConfig) -> Self {
        Self {
            core: BrokerCore::new(config),
            t: topic("T"),
        }
    }
    /// A core whose group `G` (registered) dead-letters a message after two deliveries of
    /// 1 s each.
    fn dead_lettering_after_two_deliveries() -> Self {
        let mut h = Self::with(CoreConfig {
            max_deliveries: 2,
            invisibility_ms: SEC,
            ..CoreConfig::default()
        });
        h.consume(0, "G", 1);
        h
    }
    fn publish(&mut self, now: u64, m: TopicMessage) -> mq_broker::PublishOutcome {
        self.core.publish(now, None, &self.t, m).unwrap()
    }
    fn consume_f(&mut self, now: u64, g: &str, kind: ConsumeKind, f: &str, n: u8) -> Vec<Message> {
        self.core
            .consume(
                now,
                None,
                &self.t,
                &group(g),
                kind,
                &filter(f),
                BatchSize::new(n).unwrap(),
            )
            .unwrap()
    }
    fn consume(&mut self, now: u64, g: &str, n: u8) -> Vec<Message> {
        self.consume_f(now, g, ConsumeKind::Normal, "*", n)
    }
    fn orderly(&mut self, now: u64, g: &str, n: u8) -> Vec<Message> {
        self.consume_f(now, g, ConsumeKind::Orderly, "*", n)
    }
    fn pop(&mut self, now: u64, n: u8) -> Vec<Message> {
        self.consume_f(now, "GID_checker", ConsumeKind::Half, "*", n)
    }
    fn ack(&mut self, now: u64, g: &str, hs: &[String]) -> Vec<HandleFailure> {
        self.core
            .ack(now, None, &self.t, Some(&group(g)), AckKind::Ack, hs)
            .unwrap()
    }
    fn resolve(&mut self, now: u64, kind: AckKind, h: &str) -> Vec<HandleFailure> {
        self.core
            .ack(now, None, &self.t, None, kind, &[h.to_owned()])
            .unwrap()
    }
    fn group_stats(&self, g: &str) -> mq_broker::GroupStats {
        let stats = self.core.stats();
        stats
            .topics
            .iter()
            .find(|t| t.topic == self.t.as_str())
            .and_then(|t| t.groups.iter().find(|s| s.group == g))
            .cloned()
            .unwrap()
    }
}

fn codes(f: &[HandleFailure]) -> Vec<ErrorCode> {
    f.iter().map(|f| f.code.clone()).collect()
}

#[test]
fn visibility_and_redelivery() {
    let mut h = H::new();
    assert!(h.consume(0, "G", 16).is_empty()); // registers G
    let p = h.publish(SEC, msg("m1"));
    assert!(p.visible_now);
    assert!(p.receipt_handle.is_none());
    assert_eq!(p.body_md5, mq_proto::body_md5("m1"));

    let first = h.consume(2 * SEC, "G", 16);
    assert_eq!(bodies(&first), ["m1"]);
    let m = &first[0];
    assert_eq!(m.message_id, p.message_id);
    assert_eq!(m.consumed_times, 1);
    assert_eq!(m.publish_time, SEC);
    assert_eq!(m.first_consume_time, 2 * SEC);
    assert_eq!(m.next_consume_time, 302 * SEC);
    assert_eq!(m.body_md5, p.body_md5);
    assert!(m.body_md5_matches());

    // Invisible until NextConsumeTime.
    assert!(h.consume(302 * SEC - 1, "G", 16).is_empty());
    let second = h.consume(302 * SEC, "G", 16);
    assert_eq!(second.len(), 1);
    let r = &second[0];
    assert_eq!(r.message_id, p.message_id);
    assert_ne!(r.receipt_handle, m.receipt_handle);
    assert_eq!(r.consumed_times, 2);
    assert_eq!(r.publish_time, SEC);
    assert_eq!(r.first_consume_time, 2 * SEC);
    assert_eq!(r.next_consume_time, 602 * SEC);

    // The stale handle of the first delivery no longer works; the new one does, once.
    let f = h.ack(303 * SEC, "G", &handles(&first));
    assert_eq!(codes(&f), [ErrorCode::MessageNotExist]);
    assert_eq!(f[0].receipt_handle, m.receipt_handle.as_str());
    assert!(h.ack(303 * SEC, "G", &handles(&second)).is_empty());
    let f = h.ack(304 * SEC, "G", &handles(&second));
    assert_eq!(codes(&f), [ErrorCode::MessageNotExist]);
    // Acked: never delivered again.
    assert!(h.consume(10 * DAY / 4, "G", 16).is_empty());
    let s = h.group_stats("G");
    assert_eq!((s.acked, s.delivered, s.ready, s.in_flight), (1, 2, 0, 0));
}

#[test]
fn expired_handle_is_message_not_exist() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    h.publish(0, msg("m"));
    let got = h.consume(0, "G", 1);
    // At NextConsumeTime the handle is no longer valid even without a redelivery.
    let f = h.ack(300 * SEC, "G", &handles(&got));
    assert_eq!(codes(&f), [ErrorCode::MessageNotExist]);
    assert_eq!(h.consume(300 * SEC, "G", 1)[0].consumed_times, 2);
}

#[test]
fn garbage_and_foreign_handles_are_receipt_handle_errors() {
    let mut h = H::new();
    let other_topic = topic("U");
    let inst = InstanceId::new("MQ_INST_1").unwrap();
    for t in [&h.t.clone(), &other_topic] {
        h.core
            .consume(
                0,
                None,
                t,
                &group("G"),
                ConsumeKind::Normal,
                &TagFilter::All,
                BatchSize::new(1).unwrap(),
            )
            .unwrap();
        h.core
            .consume(
                0,
                Some(&inst),
                t,
                &group("G"),
                ConsumeKind::Normal,
                &TagFilter::All,
                BatchSize::new(1).unwrap(),
            )
            .unwrap();
    }
    h.consume(0, "G2", 1);
    h.publish(0, msg("m"));
    h.core.publish(0, None, &other_topic, msg("u")).unwrap();
    h.core
        .publish(0, Some(&inst), &h.t.clone(), msg("i"))
        .unwrap();
    let mine = handles(&h.consume(0, "G", 1));
    let g2 = handles(&h.consume(0, "G2", 1));
    let u = handles(
        &h.core
            .consume(
                0,
                None,
                &other_topic,
                &group("G"),
                ConsumeKind::Normal,
                &TagFilter::All,
                BatchSize::new(1).unwrap(),
            )
            .unwrap(),
    );
    let i = handles(
        &h.core
            .consume(
                0,
                Some(&inst),
                &h.t.clone(),
                &group("G"),
                ConsumeKind::Normal,
                &TagFilter::All,
                BatchSize::new(1).unwrap(),
            )
            .unwrap(),
    );
    let h0 = &mine[0];
    let mut tampered = h0.clone();
    tampered.replace_range(h0.len() - 6..h0.len() - 4, "AB");
    let garbage = [
        "adfadfadf".to_owned(),
        "-".to_owned(),
        format!("{h0}x"),
        h0.to_lowercase(),
        tampered,
        format!("{}-AAAA", &h0[..32]),
        "x".repeat(5000),
    ];
    for bad in garbage.iter().chain(&g2).chain(&u).chain(&i) {
        let f = h.ack(SEC, "G", std::slice::from_ref(bad));
        assert_eq!(codes(&f), [ErrorCode::ReceiptHandleError], "{bad}");
        assert_eq!(&f[0].receipt_handle, bad);
        assert_eq!(f[0].message, "The receipt handle you provide is not valid.");
    }
    // The group's own handle still works after all that.
    assert!(h.ack(SEC, "G", &mine).is_empty());
    // A delivery handle cannot commit, a group handle cannot be used by another group.
    let f = h.resolve(SEC, AckKind::Commit, &g2[0]);
    assert_eq!(codes(&f), [ErrorCode::ReceiptHandleError]);
}

#[test]
fn superseded_handles_after_redelivery() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    for i in 0..3 {
        h.publish(0, msg(&format!("m{i}")));
    }
    let first = h.consume(0, "G", 3);
    // At 300 s everything is redelivered, superseding every first-delivery handle.
    let second = h.consume(300 * SEC, "G", 16);
    assert_eq!(second.len(), 3);
    let mut hs = handles(&first);
    hs.push("garbage".into());
    let f = h.ack(301 * SEC, "G", &hs);
    assert_eq!(
        codes(&f),
        [
            ErrorCode::MessageNotExist,
            ErrorCode::MessageNotExist,
            ErrorCode::MessageNotExist,
            ErrorCode::ReceiptHandleError
        ]
    );
    assert!(h.ack(301 * SEC, "G", &handles(&second)).is_empty());
}

#[test]
fn partial_ack_applies_valid_handles() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    h.publish(0, msg("a"));
    h.publish(0, msg("b"));
    let got = h.consume(0, "G", 2);
    let hs = vec![
        got[0].receipt_handle.to_string(),
        "junk".to_owned(),
        got[1].receipt_handle.to_string(),
        got[0].receipt_handle.to_string(), // duplicate: already used
    ];
    let f = h.ack(SEC, "G", &hs);
    assert_eq!(
        codes(&f),
        [ErrorCode::ReceiptHandleError, ErrorCode::MessageNotExist]
    );
    assert_eq!(f[0].receipt_handle, "junk");
    assert_eq!(f[1].receipt_handle, hs[3]);
    assert!(h.consume(DAY, "G", 16).is_empty());
    assert_eq!(h.group_stats("G").acked, 2);
}

#[test]
fn a_refused_ack_registers_no_group_and_creates_no_topic() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    // A group that never consumed: its handles are refused, and it is not registered (it
    // would hold every later message).
    let junk = vec!["junk".to_owned()];
    assert_eq!(
        codes(&h.ack(0, "GID_typo", &junk)),
        [ErrorCode::ReceiptHandleError]
    );
    h.publish(0, msg("a"));
    let stats = h.core.stats();
    let t = stats.topics.iter().find(|t| t.topic == "T").unwrap();
    let groups: Vec<&str> = t.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(groups, ["G"]);
    // A topic that does not exist: refused, and not created.
    for kind in [AckKind::Ack, AckKind::Commit, AckKind::Rollback] {
        let f = h
            .core
            .ack(0, None, &topic("Nowhere"), Some(&group("G")), kind, &junk)
            .unwrap();
        assert_eq!(codes(&f), [ErrorCode::ReceiptHandleError], "{kind:?}");
    }
    assert!(h.core.stats().topics.iter().all(|t| t.topic != "Nowhere"));
    // Without topic auto-creation the whole request is refused, as before.
    let mut strict = H::with(CoreConfig {
        auto_create_topics: false,
        ..CoreConfig::default()
    });
    let e = strict
        .core
        .ack(
            0,
            None,
            &topic("Nowhere"),
            Some(&group("G")),
            AckKind::Ack,
            &junk,
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::TopicNotExist);
    // A real handle still acks.
    let got = h.consume(SEC, "G", 1);
    assert!(h.ack(SEC, "G", &handles(&got)).is_empty());
}

#[test]
fn whole_request_ack_errors() {
    let mut h = H::new();
    let t = h.t.clone();
    let e = h
        .core
        .ack(0, None, &t, Some(&group("G")), AckKind::Ack, &[])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::MissingReceiptHandle);
    let many = vec!["x".to_owned(); 17];
    let e = h
        .core
        .ack(0, None, &t, Some(&group("G")), AckKind::Ack, &many)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    let e = h
        .core
        .ack(0, None, &t, None, AckKind::Ack, &many[..1])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
}

#[test]
fn tag_filters_skip_non_matching_messages() {
    let mut h = H::new();
    h.consume(0, "GF", 1);
    h.consume(0, "GA", 1);
    h.publish(0, tagged("a", "A"));
    h.publish(0, msg("untagged"));
    h.publish(0, tagged("b", "B"));
    h.publish(0, tagged("c", "C"));
    h.publish(0, tagged("a2", "A"));

    let got = h.consume_f(SEC, "GF", ConsumeKind::Normal, "A||B", 2);
    assert_eq!(bodies(&got), ["a", "b"]);
    // "untagged" was met and skipped for GF: an unfiltered consume does not see it.
    let rest = h.consume_f(SEC, "GF", ConsumeKind::Normal, "*", 16);
    assert_eq!(bodies(&rest), ["c", "a2"]);
    assert_eq!(h.group_stats("GF").filtered, 1);

    // Another group is unaffected and sees everything, untagged included.
    let all = h.consume_f(SEC, "GA", ConsumeKind::Normal, "", 16);
    assert_eq!(bodies(&all), ["a", "untagged", "b", "c", "a2"]);
}

#[test]
fn filters_do_not_touch_invisible_messages() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    h.publish(0, tagged("a", "A"));
    h.publish(0, tagged("b", "B"));
    let a = h.consume_f(0, "G", ConsumeKind::Normal, "A", 1);
    assert_eq!(bodies(&a), ["a"]);
    // "b" was never met by the A-filter consume (batch full), and "a" is in flight:
    let b = h.consume_f(SEC, "G", ConsumeKind::Normal, "B", 16);
    assert_eq!(bodies(&b), ["b"]);
    // "a" comes back after its invisibility; a B-filter consume then skips it.
    assert!(
        h.consume_f(300 * SEC, "G", ConsumeKind::Normal, "B", 16)
            .is_empty()
    );
    assert!(h.consume(1000 * SEC, "G", 16).iter().all(|m| m.body != "a"));
}

#[test]
fn group_starts_after_registration() {
    let mut h = H::new();
    h.publish(0, msg("before"));
    assert!(h.consume(SEC, "G", 16).is_empty());
    let p = h.publish(2 * SEC, msg("after"));
    assert!(p.visible_now);
    assert_eq!(bodies(&h.consume(3 * SEC, "G", 16)), ["after"]);
    // No group registered on a fresh topic: nothing became visible.
    let mut h2 = H::new();
    assert!(!h2.publish(0, msg("x")).visible_now);
}

#[test]
fn delayed_messages() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    let now = 1_000 * SEC;
    // Past or present start time: immediately visible.
    let p = h.publish(now, msg("past").with_start_deliver_time(now - 5));
    assert!(p.visible_now);
    assert!(
        h.publish(now, msg("present").with_start_deliver_time(now))
            .visible_now
    );
    let p = h.publish(now, msg("future").with_start_deliver_time(now + 30 * SEC));
    assert!(!p.visible_now);
    assert_eq!(bodies(&h.consume(now, "G", 16)), ["past", "present"]);
    assert_eq!(h.group_stats("G").delayed, 1);
    // next_wakeup: the scheduled time comes before the redeliveries.
    assert_eq!(h.core.next_wakeup(), Some(now + 30 * SEC));
    assert!(h.consume(now + 30 * SEC - 1, "G", 16).is_empty());
    let got = h.consume(now + 30 * SEC, "G", 16);
    assert_eq!(bodies(&got), ["future"]);
    assert_eq!(got[0].start_deliver_time(), Some(now + 30 * SEC));
    assert_eq!(got[0].publish_time, now);

    // Horizon: exactly 40 days ahead is fine, one ms more is not.
    let now = now + 30 * SEC;
    h.publish(now, msg("edge").with_start_deliver_time(now + 40 * DAY));
    let t = h.t.clone();
    let e = h
        .core
        .publish(
            now,
            None,
            &t,
            msg("far").with_start_deliver_time(now + 40 * DAY + 1),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
}

#[test]
fn transaction_commit_with_publish_handle() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    let p = h.publish(0, trans("t1", 10));
    assert!(!p.visible_now);
    let handle = p.receipt_handle.unwrap();
    assert!(handle.as_str().starts_with(p.message_id.as_str()));
    assert!(h.consume(SEC, "G", 16).is_empty());
    assert!(h.pop(9 * SEC, 16).is_empty());
    let v = h.core.topic_version(None, &h.t);
    assert!(
        h.resolve(9_999, AckKind::Commit, handle.as_str())
            .is_empty()
    );
    assert!(h.core.topic_version(None, &h.t) > v);
    let got = h.consume(10 * SEC, "G", 16);
    assert_eq!(bodies(&got), ["t1"]);
    assert_eq!(got[0].message_id, p.message_id);
    assert_eq!(got[0].publish_time, 0);
    assert_eq!(got[0].trans_check_immunity().map(|i| i.get()), Some(10));
    // Resolved: nothing left to pop, the handle is used up.
    assert!(h.pop(DAY / 2, 16).is_empty());
    let f = h.resolve(5 * SEC, AckKind::Rollback, handle.as_str());
    assert_eq!(codes(&f), [ErrorCode::MessageNotExist]);
}

#[test]
fn transaction_check_loop() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    let p = h.publish(0, trans("t", 10).with_tag(Tag::new("X").unwrap()));
    let publish_handle = p.receipt_handle.unwrap();
    assert_eq!(h.core.next_wakeup_for(None, &h.t), Some(10 * SEC));
    // After the immunity the publish handle is dead.
    let f = h.resolve(10 * SEC, AckKind::Commit, publish_handle.as_str());
    assert_eq!(codes(&f), [ErrorCode::MessageNotExist]);

    let first = h.pop(10 * SEC, 16);
    assert_eq!(bodies(&first), ["t"]);
    assert_eq!(first[0].consumed_times, 1);
    assert_eq!(first[0].next_consume_time, 20 * SEC);
    assert_eq!(first[0].first_consume_time, 10 * SEC);
    assert_eq!(first[0].message_id, p.message_id);
    // Invisible for 10 s, then offered again with a new handle.
    assert!(h.pop(20 * SEC - 1, 16).is_empty());
    // A filter selects half messages but skips nothing.
    assert!(
        h.consume_f(20 * SEC, "GID_checker", ConsumeKind::Half, "Y", 16)
            .is_empty()
    );
    let second = h.consume_f(20 * SEC, "GID_other", ConsumeKind::Half, "X", 16);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].consumed_times, 2);
    assert_eq!(second[0].first_consume_time, 10 * SEC);
    assert_ne!(second[0].receipt_handle, first[0].receipt_handle);
    // The superseded pop handle fails, the latest one commits.
    let f = h.resolve(21 * SEC, AckKind::Commit, first[0].receipt_handle.as_str());
    assert_eq!(codes(&f), [ErrorCode::MessageNotExist]);
    assert!(
        h.resolve(21 * SEC, AckKind::Commit, second[0].receipt_handle.as_str())
            .is_empty()
    );
    assert_eq!(bodies(&h.consume(21 * SEC, "G", 16)), ["t"]);
    // Half pops did not register the checker groups.
    let stats = h.core.stats();
    assert_eq!(stats.topics[0].groups.len(), 1);
    assert_eq!(stats.topics[0].half_committed, 1);
    assert_eq!(stats.topics[0].half_popped, 2);
}

#[test]
fn transaction_rollback_and_pop_handle_expiry() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    h.publish(0, trans("r", 10));
    let popped = h.pop(10 * SEC, 16);
    // The pop handle expires at the next check time.
    let f = h.resolve(
        20 * SEC,
        AckKind::Rollback,
        popped[0].receipt_handle.as_str(),
    );
    assert_eq!(codes(&f), [ErrorCode::MessageNotExist]);
    let again = h.pop(20 * SEC, 16);
    assert!(
        h.resolve(
            25 * SEC,
            AckKind::Rollback,
            again[0].receipt_handle.as_str()
        )
        .is_empty()
    );
    assert!(h.pop(DAY / 2, 16).is_empty());
    assert!(h.consume(DAY / 2, "G", 16).is_empty());
    assert_eq!(h.core.stats().topics[0].half_rolled_back, 1);
    assert_eq!(h.core.stats().topics[0].half, 0);
}

#[test]
fn transaction_commit_accepts_a_group_and_keeps_schedule() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    let at = 100 * SEC;
    let p = h.publish(0, trans("s", 10).with_start_deliver_time(at));
    let t = h.t.clone();
    let f = h
        .core
        .ack(
            SEC,
            None,
            &t,
            Some(&group("GID_producer")),
            AckKind::Commit,
            &[p.receipt_handle.unwrap().to_string()],
        )
        .unwrap();
    assert!(f.is_empty());
    assert!(h.consume(at - 1, "G", 16).is_empty());
    assert_eq!(bodies(&h.consume(at, "G", 16)), ["s"]);
}

#[test]
fn unresolved_half_messages_are_dropped_at_the_horizon() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    h.publish(0, trans("lost", 10));
    let mut now = 10 * SEC;
    let mut pops = 0;
    let mut last = None;
    while now < DAY {
        let got = h.pop(now, 16);
        if let Some(m) = got.first() {
            pops += 1;
            assert_eq!(m.consumed_times, pops);
            last = Some(m.receipt_handle.to_string());
        }
        now += 10 * SEC;
    }
    assert_eq!(pops, 8_639); // 10 s .. 24 h - 10 s, every 10 s
    assert_eq!(h.core.next_wakeup_for(None, &h.t), Some(DAY));
    h.core.maintain(DAY);
    let stats = h.core.stats();
    assert_eq!(stats.topics[0].half_dropped_unresolved, 1);
    assert_eq!(stats.topics[0].half, 0);
    assert!(h.pop(DAY, 16).is_empty());
    let f = h.resolve(DAY, AckKind::Commit, &last.unwrap());
    assert_eq!(codes(&f), [ErrorCode::MessageNotExist]);
    // maintain is idempotent.
    h.core.maintain(DAY);
    assert_eq!(h.core.stats().topics[0].half_dropped_unresolved, 1);
}

#[test]
fn dead_letter_after_max_deliveries() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    h.publish(0, msg("poison"));
    h.publish(0, msg("fine"));
    let mut now = 0;
    for i in 1..=288u32 {
        let got = h.consume(now, "G", 16);
        assert_eq!(got.len(), 2, "delivery {i}");
        assert!(got.iter().all(|m| m.consumed_times == i));
        if i == 288 {
            let fine: Vec<String> = got
                .iter()
                .filter(|m| m.body == "fine")
                .map(|m| m.receipt_handle.to_string())
                .collect();
            assert!(h.ack(now, "G", &fine).is_empty());
        }
        now += 300 * SEC;
    }
    // The 288th delivery expired: the message is dead-lettered, not delivered again.
    assert!(h.consume(now, "G", 16).is_empty());
    assert_eq!(h.group_stats("G").dead_lettered, 1);
    assert!(h.consume(now + DAY, "G", 16).is_empty());
    let dead = h.core.dead_letters(None, &h.t, &group("G"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].consumed_times, 288);
    let s = h.group_stats("G");
    assert_eq!(
        (s.dead_lettered, s.delivered, s.acked, s.ready, s.in_flight),
        (1, 576, 1, 0, 0)
    );
}

#[test]
fn dead_lettering_happens_in_maintain_and_can_be_avoided_by_acking() {
    let mut h = H::dead_lettering_after_two_deliveries();
    h.publish(0, msg("x"));
    h.publish(0, msg("y"));
    h.consume(0, "G", 16);
    let second = h.consume(SEC, "G", 16);
    assert_eq!(second.len(), 2);
    assert_eq!(h.core.next_wakeup(), Some(2 * SEC));
    let keep = handles(&second[1..]);
    assert!(h.ack(2 * SEC - 1, "G", &keep).is_empty());
    let v = h.core.topic_version(None, &h.t);
    h.core.maintain(2 * SEC);
    assert!(h.core.topic_version(None, &h.t) > v);
    assert_eq!(h.group_stats("G").dead_lettered, 1);
    assert_eq!(h.group_stats("G").acked, 1);
    // Next: the acked message, kept an hour after its ack (then the dead letter's retention).
    assert_eq!(h.core.next_wakeup(), Some(2 * SEC - 1 + 3_600_000));
    h.core.maintain(2 * SEC - 1 + 3_600_000);
    // The dead letter's body goes with the message's retention (from its publish), the
    // record itself with the dead-letter retention.
    assert_eq!(h.core.next_wakeup(), Some(3 * DAY));
    h.core.maintain(3 * DAY);
    assert_eq!(h.core.next_wakeup(), Some(2 * SEC + 3 * DAY));
}

#[test]
fn a_consumed_message_shows_its_last_delivery_count_after_a_resend() {
    let mut h = H::dead_lettering_after_two_deliveries();
    h.publish(0, msg("x").with_key("k").unwrap());
    assert_eq!(h.consume(0, "G", 1)[0].consumed_times, 1);
    assert_eq!(h.consume(SEC, "G", 1)[0].consumed_times, 2);
    h.core.maintain(2 * SEC);
    assert_eq!(h.group_stats("G").dead_lettered, 1);
    let resent = h
        .core
        .take_dead_letters(
            2 * SEC,
            None,
            &h.t,
            &group("G"),
            None,
            mq_broker::core::DeadLetterAction::Resend,
        )
        .unwrap();
    assert_eq!(resent, 1);
    let again = h.consume(2 * SEC, "G", 1);
    assert_eq!(
        again[0].consumed_times, 1,
        "a resent dead letter counts from 1"
    );
    assert!(h.ack(2 * SEC, "G", &handles(&again)).is_empty());
    // Acked: no group holds it; its trace still says how its last delivery counted.
    let page = h
        .core
        .find(None, &h.t, mq_broker::core::Lookup::Key("k"), None, 10)
        .unwrap();
    let found = &page.messages[0];
    assert_eq!(found.message.consumed_times, 1);
    assert_eq!(found.groups[0].consumed_times, 1);
}

#[test]
fn ordered_fifo_per_partition_and_blocking() {
    let mut h = H::new();
    h.orderly(0, "G", 1);
    for i in 0..3 {
        h.publish(0, ordered(&format!("a{i}"), "A"));
        h.publish(0, ordered(&format!("b{i}"), "B"));
    }
    h.publish(1, msg("n0")); // no key: partition "", ready after A and B
    // A batch mixes partitions, each in order.
    let got = h.orderly(SEC, "G", 4);
    assert_eq!(bodies(&got), ["a0", "a1", "a2", "b0"]);
    assert_eq!(got[0].next_consume_time, 61 * SEC);
    assert_eq!(got[0].sharding_key(), Some("A"));
    // A and B are blocked (B has b0 in flight); only partition "" is left.
    let n0 = h.orderly(SEC, "G", 16);
    assert_eq!(bodies(&n0), ["n0"]);
    assert!(h.ack(SEC, "G", &handles(&n0)).is_empty());
    assert!(h.orderly(2 * SEC, "G", 16).is_empty());
    // Acking b0 unblocks B and wakes waiters.
    let v = h.core.topic_version(None, &h.t);
    assert!(h.ack(3 * SEC, "G", &handles(&got[3..])).is_empty());
    assert!(h.core.topic_version(None, &h.t) > v);
    assert_eq!(bodies(&h.orderly(3 * SEC, "G", 16)), ["b1", "b2"]);
    // Ack a0 and a2 but not a1: A stays blocked ...
    let part = vec![
        got[0].receipt_handle.to_string(),
        got[2].receipt_handle.to_string(),
    ];
    assert!(h.ack(4 * SEC, "G", &part).is_empty());
    assert!(h.orderly(60 * SEC, "G", 16).is_empty());
    // ... until the 60 s invisibility ends: only a1 comes again, with a new handle.
    let again = h.orderly(61 * SEC, "G", 16);
    assert_eq!(bodies(&again), ["a1"]);
    assert_eq!(again[0].consumed_times, 2);
    assert_ne!(again[0].receipt_handle, got[1].receipt_handle);
    let f = h.ack(62 * SEC, "G", &handles(&got[1..2]));
    assert_eq!(codes(&f), [ErrorCode::MessageNotExist]);
}

#[test]
fn ordered_redelivery_keeps_order_and_new_messages_wait() {
    let mut h = H::new();
    h.orderly(0, "G", 1);
    for i in 0..4 {
        h.publish(0, ordered(&format!("m{i}"), "K"));
    }
    let first = h.orderly(0, "G", 3);
    assert_eq!(bodies(&first), ["m0", "m1", "m2"]);
    h.publish(SEC, ordered("m4", "K"));
    assert!(h.orderly(SEC, "G", 16).is_empty());
    // Ack the middle one only; at 60 s m0 and m2 come back in order, then the rest.
    assert!(h.ack(2 * SEC, "G", &handles(&first[1..2])).is_empty());
    assert_eq!(h.core.next_wakeup(), Some(60 * SEC));
    let second = h.orderly(60 * SEC, "G", 2);
    assert_eq!(bodies(&second), ["m0", "m2"]);
    assert!(second.iter().all(|m| m.consumed_times == 2));
    assert!(h.ack(61 * SEC, "G", &handles(&second)).is_empty());
    assert_eq!(bodies(&h.orderly(61 * SEC, "G", 16)), ["m3", "m4"]);
}

#[test]
fn normal_and_orderly_share_the_queue() {
    let mut h = H::new();
    h.orderly(0, "G", 1);
    h.publish(0, ordered("a0", "A"));
    h.publish(0, ordered("a1", "A"));
    // A normal consume takes a0 out of order rules: partition A is now blocked for orderly.
    let n = h.consume(0, "G", 1);
    assert_eq!(bodies(&n), ["a0"]);
    assert!(h.orderly(SEC, "G", 16).is_empty());
    assert!(h.ack(SEC, "G", &handles(&n)).is_empty());
    assert_eq!(bodies(&h.orderly(SEC, "G", 16)), ["a1"]);
}

#[test]
fn scheduled_head_holds_back_its_partition() {
    let mut h = H::new();
    h.orderly(0, "G", 1);
    h.publish(0, ordered("late", "P").with_start_deliver_time(10 * SEC));
    h.publish(0, ordered("next", "P"));
    h.publish(0, ordered("other", "Q"));
    assert_eq!(bodies(&h.orderly(0, "G", 16)), ["other"]);
    assert_eq!(bodies(&h.orderly(10 * SEC, "G", 16)), ["late", "next"]);
}

#[test]
fn limits() {
    let mut h = H::new();
    let t = h.t.clone();
    let mut publish = |m: TopicMessage| h.core.publish(0, None, &t, m);
    let max = 4 * 1024 * 1024;
    assert!(publish(msg(&"x".repeat(max))).is_ok());
    assert_eq!(
        publish(msg(&"x".repeat(max + 1))).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    let special = 64 * 1024;
    assert!(publish(trans(&"x".repeat(special), 10)).is_ok());
    assert_eq!(
        publish(trans(&"x".repeat(special + 1), 10))
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        publish(msg(&"x".repeat(special + 1)).with_start_deliver_time(5))
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    assert!(publish(ordered(&"x".repeat(special + 1), "k")).is_ok());
    let mut big = msg("p");
    for i in 0..200 {
        big = big
            .with_property(format!("key{i}"), "v".repeat(80))
            .unwrap();
    }
    let e = publish(big).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert!(!e.message.is_empty());
}

#[test]
fn unknown_topics() {
    let mut core = BrokerCore::new(CoreConfig {
        auto_create_topics: false,
        ..CoreConfig::default()
    });
    let known = topic("Known");
    let unknown = topic("Unknown");
    let inst = InstanceId::new("MQ_INST_X").unwrap();
    core.declare_topic(None, &known);
    assert!(core.topic_exists(None, &known));
    assert!(!core.topic_exists(Some(&inst), &known));
    assert!(core.publish(0, None, &known, msg("m")).is_ok());
    let all = TagFilter::All;
    let one = BatchSize::new(1).unwrap();
    let g = group("G");
    let e = core.publish(0, None, &unknown, msg("m")).unwrap_err();
    assert_eq!(e.code, ErrorCode::TopicNotExist);
    assert_eq!(e.code.status(), 404);
    let e = core.publish(0, Some(&inst), &known, msg("m")).unwrap_err();
    assert_eq!(e.code, ErrorCode::TopicNotExist);
    for kind in [ConsumeKind::Normal, ConsumeKind::Orderly, ConsumeKind::Half] {
        let e = core
            .consume(0, None, &unknown, &g, kind, &all, one)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TopicNotExist);
    }
    let e = core
        .ack(0, None, &unknown, Some(&g), AckKind::Ack, &["h".to_owned()])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::TopicNotExist);
    assert!(!core.topic_exists(None, &unknown));
    assert!(core.stats().topics.iter().all(|t| t.declared));

    // With auto-creation any topic works and shows up as not declared.
    let mut auto = BrokerCore::new(CoreConfig::default());
    auto.publish(0, Some(&inst), &unknown, msg("m")).unwrap();
    let s = auto.stats();
    assert_eq!(s.topics[0].instance.as_deref(), Some("MQ_INST_X"));
    assert!(!s.topics[0].declared);
}

#[test]
fn retention_trims_old_messages() {
    let mut h = H::with(CoreConfig {
        retention_ms: 3 * DAY,
        ..CoreConfig::default()
    });
    h.consume(0, "G", 1);
    h.publish(0, msg("old"));
    h.publish(DAY, msg("young"));
    h.publish(0, msg("scheduled").with_start_deliver_time(2 * DAY));
    assert_eq!(h.core.next_wakeup(), Some(2 * DAY));
    h.core.maintain(2 * DAY);
    assert_eq!(h.core.next_wakeup(), Some(3 * DAY));
    h.core.maintain(3 * DAY);
    let s = h.group_stats("G");
    assert_eq!((s.trimmed, s.ready), (1, 2));
    assert_eq!(h.core.stats().topics[0].stored, 2);
    assert_eq!(bodies(&h.consume(3 * DAY, "G", 16)), ["young", "scheduled"]);
    // Storage time of a scheduled message counts from its delivery time.
    h.core.maintain(4 * DAY);
    assert_eq!(h.core.stats().topics[0].stored, 1);
    h.core.maintain(5 * DAY);
    assert_eq!(h.core.stats().topics[0].stored, 0);
    assert_eq!(h.group_stats("G").trimmed, 3);
}

#[test]
fn acked_messages_leave_the_store() {
    let mut h = H::new();
    h.consume(0, "G1", 1);
    h.consume(0, "G2", 1);
    h.publish(0, msg("m"));
    let a = h.consume(0, "G1", 1);
    assert!(h.ack(0, "G1", &handles(&a)).is_empty());
    assert_eq!(h.core.stats().topics[0].stored, 1);
    let b = h.consume(0, "G2", 1);
    assert!(h.ack(0, "G2", &handles(&b)).is_empty());
    assert_eq!(h.core.stats().topics[0].stored, 0);
    // Kept for the consumed-message retention (an hour by default), then dropped.
    assert_eq!(h.core.stats().topics[0].consumed_kept, 1);
    assert_eq!(h.core.next_wakeup(), Some(3_600_000));
    h.core.maintain(3_600_000);
    assert_eq!(h.core.stats().topics[0].consumed_kept, 0);
    assert_eq!(h.core.next_wakeup(), None);
}

#[test]
fn consumed_messages_are_kept_within_their_byte_bound() {
    let mut h = H::with(CoreConfig {
        consumed_retention_bytes: 10,
        ..CoreConfig::default()
    });
    h.consume(0, "G", 1);
    for body in ["12345", "67890", "abcde"] {
        h.publish(0, msg(body));
    }
    let got = h.consume(0, "G", 16);
    assert!(h.ack(1, "G", &handles(&got)).is_empty());
    // Three 5-byte bodies released; the next call's sweep keeps the newest 10 bytes.
    h.core.maintain(2);
    assert_eq!(h.core.stats().topics[0].consumed_kept, 2);
    let page = h
        .core
        .page(None, &h.t, 0, u64::MAX, None, 10)
        .expect("page");
    let kept: Vec<_> = page
        .messages
        .iter()
        .filter_map(|f| f.message.body.as_deref())
        .collect();
    assert_eq!(kept, ["67890", "abcde"]);
}

#[test]
fn removed_messages_are_handed_over_for_dropping_and_never_pile_up() {
    // No group: every message is unheld at once, and the byte bound keeps one 5-byte body.
    let mut h = H::with(CoreConfig {
        consumed_retention_bytes: 5,
        ..CoreConfig::default()
    });
    h.publish(0, msg("first"));
    assert!(h.core.take_retired().is_empty());
    h.publish(0, msg("secnd"));
    // The first went to the bin (for a server to drop outside its lock), once.
    assert_eq!(h.core.take_retired().len(), 1);
    assert!(h.core.take_retired().is_empty());
    assert_eq!(h.core.stats().topics[0].consumed_kept, 1);
    // A caller that never takes them holds a bounded number: the rest are dropped at once.
    for i in 0..1_000 {
        h.publish(0, msg(&format!("m{i:04}")));
    }
    let waiting = h.core.take_retired().len();
    assert!((200..=256).contains(&waiting), "{waiting} waiting");
    assert_eq!(h.core.stats().topics[0].consumed_kept, 1);
}

#[test]
fn next_wakeup_and_versions() {
    let mut h = H::new();
    assert_eq!(h.core.next_wakeup(), None);
    h.consume(0, "G", 1);
    assert_eq!(h.core.next_wakeup(), None);
    let v0 = h.core.topic_version(None, &h.t);
    h.publish(0, msg("now"));
    let v1 = h.core.topic_version(None, &h.t);
    assert!(v1 > v0);
    // A visible message is not a future event; retention is.
    assert_eq!(h.core.next_wakeup(), Some(3 * DAY));
    h.publish(0, msg("later").with_start_deliver_time(50 * SEC));
    assert_eq!(h.core.topic_version(None, &h.t), v1); // not visible yet
    assert_eq!(h.core.next_wakeup(), Some(50 * SEC));
    h.consume(SEC, "G", 16); // "now" in flight until 301 s
    assert_eq!(h.core.next_wakeup(), Some(50 * SEC));
    // Time passes; the next sweep notices that "later" became visible.
    h.core.maintain(50 * SEC);
    let v2 = h.core.topic_version(None, &h.t);
    assert!(v2 > v1);
    assert_eq!(h.core.next_wakeup(), Some(301 * SEC));
    h.core.maintain(60 * SEC);
    assert_eq!(h.core.topic_version(None, &h.t), v2); // nothing happened in between
    // Half messages: check time is an event; other topics are independent.
    let u = topic("U");
    h.core.publish(70 * SEC, None, &u, trans("t", 100)).unwrap();
    assert_eq!(h.core.next_wakeup_for(None, &u), Some(170 * SEC));
    assert_eq!(h.core.next_wakeup(), Some(170 * SEC));
    assert_eq!(h.core.next_wakeup_for(None, &h.t), Some(301 * SEC));
    // An event that passed while another topic was used is still reported (as due now).
    h.core.maintain(0); // time never goes back
    assert_eq!(h.core.now_ms(), 70 * SEC);
    h.core
        .consume(
            400 * SEC,
            None,
            &u,
            &group("G"),
            ConsumeKind::Normal,
            &TagFilter::All,
            BatchSize::new(1).unwrap(),
        )
        .unwrap();
    // T was last swept at 60 s: its redelivery at 301 s is reported although 400 s passed.
    assert_eq!(h.core.next_wakeup(), Some(301 * SEC));
    let v = h.core.topic_version(None, &h.t);
    h.core.maintain(400 * SEC);
    assert!(h.core.topic_version(None, &h.t) > v);
    assert_eq!(h.core.topic_version(None, &topic("Nope")), 0);
    assert!(h.core.next_wakeup().unwrap() > 400 * SEC);
}

#[test]
fn message_ids_are_deterministic_hex() {
    let run = |seed: u64| {
        let mut core = BrokerCore::new(CoreConfig {
            id_seed: seed,
            ..CoreConfig::default()
        });
        (0..3)
            .map(|i| {
                core.publish(i, None, &topic("T"), msg("m"))
                    .unwrap()
                    .message_id
            })
            .collect::<Vec<_>>()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    for id in &a {
        assert_eq!(id.as_str().len(), 32);
        assert!(
            id.as_str()
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
        );
    }
    assert_ne!(a[0], a[1]);
}

#[test]
fn stats_serialize() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    h.publish(0, msg("a"));
    h.publish(0, msg("b").with_start_deliver_time(10 * SEC));
    h.publish(0, trans("c", 10));
    h.consume(0, "G", 1);
    let s = h.group_stats("G");
    assert_eq!((s.ready, s.in_flight, s.delayed), (0, 1, 1));
    let stats = h.core.stats();
    assert_eq!(stats.published, 3);
    assert_eq!(stats.topics[0].half, 1);
    let json = serde_json::to_string(&stats).unwrap();
    assert!(json.contains("\"in_flight\":1"));
}

#[test]
fn many_messages_are_fast() {
    let mut h = H::new();
    h.consume(0, "G", 1);
    let n = 100_000;
    for i in 0..n {
        h.publish(i, msg("payload"));
    }
    let mut now = n;
    let mut seen = 0;
    loop {
        let got = h.consume(now, "G", 16);
        if got.is_empty() {
            break;
        }
        seen += got.len();
        assert!(h.ack(now, "G", &handles(&got)).is_empty());
        now += 1;
    }
    assert_eq!(seen as u64, n);
    assert_eq!(h.core.stats().topics[0].stored, 0);
}

// ---------------------------------------------------------------------------------------------
// Deciding a half message by id (admin API) is the protocol's commit / rollback by handle

mod decide_half_by_id {
    use super::*;
    use mq_broker::core::TransactionResolution;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Step {
        /// A half message on topic T0 or T1, first checked after `immunity` s.
        Publish {
            topic: usize,
            immunity: u32,
        },
        /// A normal message (so the groups hold other messages too).
        Normal {
            topic: usize,
        },
        Advance(u64),
        /// A transaction check pop on a topic.
        Check {
            topic: usize,
        },
        /// A consume (and ack of half of what came) by a group.
        Consume {
            topic: usize,
            group: usize,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0usize..2, 10u32..40).prop_map(|(topic, immunity)| Step::Publish { topic, immunity }),
            1 => (0usize..2).prop_map(|topic| Step::Normal { topic }),
            3 => (0u64..30_000).prop_map(Step::Advance),
            2 => (0usize..2).prop_map(|topic| Step::Check { topic }),
            2 => (0usize..2, 0usize..2).prop_map(|(topic, group)| Step::Consume { topic, group }),
        ]
    }

    const TOPICS: [&str; 2] = ["T0", "T1"];
    const GROUPS: [&str; 2] = ["GID_a", "GID_b"];

    /// A transaction check pop on topic `t`: the handles it gives replace the earlier ones.
    fn check(
        core: &mut BrokerCore,
        now: u64,
        t: usize,
        latest: &mut BTreeMap<String, (usize, String)>,
    ) {
        let got = core
            .consume(
                now,
                None,
                &topic(TOPICS[t]),
                &group("GID_check"),
                ConsumeKind::Half,
                &TagFilter::All,
                BatchSize::MAX,
            )
            .unwrap();
        for m in got {
            latest.insert(
                m.message_id.as_str().to_owned(),
                (t, m.receipt_handle.to_string()),
            );
        }
    }

    /// Runs the steps; the latest handle of every half message by id, with its topic.
    fn run(
        core: &mut BrokerCore,
        now: &mut u64,
        steps: &[Step],
    ) -> BTreeMap<String, (usize, String)> {
        let mut latest = BTreeMap::new();
        for t in TOPICS {
            for g in GROUPS {
                let out = core.consume(
                    *now,
                    None,
                    &topic(t),
                    &group(g),
                    ConsumeKind::Normal,
                    &TagFilter::All,
                    BatchSize::MIN,
                );
                assert!(out.is_ok(), "{out:?}");
            }
        }
        for s in steps {
            match *s {
                Step::Publish { topic: t, immunity } => {
                    let p = core
                        .publish(*now, None, &topic(TOPICS[t]), trans("half", immunity))
                        .unwrap();
                    let handle = p.receipt_handle.expect("publish handle").to_string();
                    latest.insert(p.message_id.as_str().to_owned(), (t, handle));
                }
                Step::Normal { topic: t } => {
                    core.publish(*now, None, &topic(TOPICS[t]), msg("normal"))
                        .unwrap();
                }
                Step::Advance(ms) => *now += ms,
                Step::Check { topic: t } => check(core, *now, t, &mut latest),
                Step::Consume { topic: t, group: g } => {
                    let got = core
                        .consume(
                            *now,
                            None,
                            &topic(TOPICS[t]),
                            &group(GROUPS[g]),
                            ConsumeKind::Normal,
                            &TagFilter::All,
                            BatchSize::MAX,
                        )
                        .unwrap();
                    let acked: Vec<String> = handles(&got).into_iter().step_by(2).collect();
                    if !acked.is_empty() {
                        core.ack(
                            *now,
                            None,
                            &topic(TOPICS[t]),
                            Some(&group(GROUPS[g])),
                            AckKind::Ack,
                            &acked,
                        )
                        .unwrap();
                    }
                }
            }
        }
        // Every due half message gets a fresh handle, so each latest handle is valid now.
        for t in 0..TOPICS.len() {
            check(core, *now, t, &mut latest);
        }
        latest
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Committing or rolling back a half message by its id leaves the core in exactly
        /// the state a commit / rollback with its current receipt handle does — the
        /// message's groups, trace, counters, wakeups — and both cores answer what follows
        /// alike; once decided either way, neither the id nor the handle decides it again.
        #[test]
        fn a_decision_by_id_is_the_protocols_decision_by_handle(
            steps in prop::collection::vec(step(), 1..40),
            pick in any::<prop::sample::Index>(),
            commit in any::<bool>(),
            after in prop::collection::vec(step(), 0..10),
        ) {
            let mut by_handle = BrokerCore::new(CoreConfig::default());
            let mut now = 1_000_000;
            let latest = run(&mut by_handle, &mut now, &steps);
            prop_assume!(!latest.is_empty());
            let (id, (t, handle)) = latest.iter().nth(pick.index(latest.len())).unwrap();
            let t = topic(TOPICS[*t]);
            let mut by_id = by_handle.clone();
            let (kind, resolution) = if commit {
                (AckKind::Commit, TransactionResolution::Commit)
            } else {
                (AckKind::Rollback, TransactionResolution::Rollback)
            };
            let failures = by_handle.ack(now, None, &t, None, kind, std::slice::from_ref(handle)).unwrap();
            let decided = by_id.decide_half(now, None, &t, id, resolution);
            match failures.as_slice() {
                // Still waiting: both decide it.
                [] => prop_assert!(decided.is_ok(), "{decided:?}"),
                // Dropped unresolved at the horizon (or decided before): neither does.
                [f] => {
                    prop_assert_eq!(&f.code, &ErrorCode::MessageNotExist);
                    prop_assert_eq!(decided.unwrap_err().code, ErrorCode::MessageNotExist);
                }
                more => prop_assert!(false, "{more:?}"),
            }
            prop_assert!(by_handle == by_id, "the states differ");
            prop_assert_eq!(by_handle.trace(id), by_id.trace(id));
            prop_assert_eq!(by_handle.stats(), by_id.stats());
            prop_assert_eq!(by_handle.next_wakeup(), by_id.next_wakeup());
            // Decided: neither way decides it again.
            let again = by_id.decide_half(now, None, &t, id, TransactionResolution::Commit);
            prop_assert_eq!(again.unwrap_err().code, ErrorCode::MessageNotExist);
            let mut now_handle = now;
            let mut now_id = now;
            run(&mut by_handle, &mut now_handle, &after);
            run(&mut by_id, &mut now_id, &after);
            prop_assert!(by_handle == by_id, "the states differ later");
        }
    }

    /// A decision by id is refused for what is not a waiting half message: an unknown or
    /// malformed id, a normal message, another topic's half message, one already decided.
    #[test]
    fn only_a_waiting_half_message_is_decided() {
        let mut core = BrokerCore::new(CoreConfig::default());
        let (t, other) = (topic("T"), topic("Other"));
        core.consume(
            0,
            None,
            &t,
            &group("GID_a"),
            ConsumeKind::Normal,
            &TagFilter::All,
            BatchSize::MIN,
        )
        .unwrap();
        core.declare_topic(None, &other);
        let half = core
            .publish(1_000, None, &t, trans("half", 10))
            .unwrap()
            .message_id;
        let normal = core
            .publish(1_000, None, &t, msg("normal"))
            .unwrap()
            .message_id;
        let refused = |core: &mut BrokerCore, t: &TopicName, id: &str| {
            core.decide_half(2_000, None, t, id, TransactionResolution::Commit)
                .unwrap_err()
                .code
        };
        for id in [
            "",
            "not an id",
            "0123456789ABCDEF0123456789ABCDEF",
            normal.as_str(),
            &half.as_str().to_lowercase(),
        ] {
            assert_eq!(
                refused(&mut core, &t, id),
                ErrorCode::MessageNotExist,
                "{id:?}"
            );
        }
        assert_eq!(
            refused(&mut core, &other, half.as_str()),
            ErrorCode::MessageNotExist
        );
        assert_eq!(
            refused(&mut core, &topic("Nowhere"), half.as_str()),
            ErrorCode::TopicNotExist
        );
        core.decide_half(
            2_000,
            None,
            &t,
            half.as_str(),
            TransactionResolution::Rollback,
        )
        .unwrap();
        assert_eq!(
            refused(&mut core, &t, half.as_str()),
            ErrorCode::MessageNotExist
        );
        let got = core
            .consume(
                3_000,
                None,
                &t,
                &group("GID_a"),
                ConsumeKind::Normal,
                &TagFilter::All,
                BatchSize::MAX,
            )
            .unwrap();
        assert_eq!(
            bodies(&got),
            ["normal"],
            "the rolled-back message is never delivered"
        );
    }
}

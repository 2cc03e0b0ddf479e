//! The coordinator: embedded (one voter, no network) and over an in-process 3-node cluster
//! on 127.0.0.1 (real HTTP/2 between the nodes).

use std::time::Duration;

use omium_core::consensus::{
    BroadcastRequest, ClusterStatus, Coordinator, CoordinatorConfig, MessageStatus,
};
use omium_core::policy::Trigger;
use omium_core::prelude::*;
use omium_core::Store;
use serde_json::json;

use crate::common;

fn req(exec: &str, targets: &[&str], message: serde_json::Value) -> BroadcastRequest {
    BroadcastRequest {
        execution_id: exec.into(),
        sender: "planner".into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        message,
        ..Default::default()
    }
}

#[test]
fn embedded_messages_are_agreed_in_order_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = {
        let store = Store::open(dir.path()).unwrap();
        let c = Coordinator::embedded(&store).unwrap();
        assert!(c.is_embedded());
        let mut ids = Vec::new();
        for i in 0..5 {
            let b = c
                .broadcast(&req("run-1", &["a", "b", "c"], json!({"step": i})))
                .unwrap();
            assert_eq!(
                b.seq,
                i + 1,
                "messages of one execution are numbered in order"
            );
            ids.push(b.id);
        }
        // Another execution has its own order.
        assert_eq!(c.broadcast(&req("run-2", &["a"], json!(1))).unwrap().seq, 1);
        for id in &ids {
            // Majority of 3 is 2: one ack leaves it pending, the second agrees.
            assert_eq!(
                c.acknowledge(id, "a", None).unwrap(),
                MessageStatus::Pending
            );
            assert!(matches!(
                c.acknowledge(id, "b", None).unwrap(),
                MessageStatus::Agreed { value: None, .. }
            ));
            let m = c.await_agreement(id, Duration::from_secs(5)).unwrap();
            assert_eq!(m.acks.len(), 2);
        }
        let listed = c.status("run-1").unwrap();
        assert_eq!(
            listed.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            ids,
            "status lists the messages in their agreed order"
        );
        assert_eq!(listed[3].to_json()["message"], json!({"step": 3}));
        ids
    };
    // Everything agreed is still there after the store is closed and reopened.
    let store = Store::open(dir.path()).unwrap();
    let c = Coordinator::embedded(&store).unwrap();
    let listed = c.status("run-1").unwrap();
    assert_eq!(listed.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
    assert!(listed.iter().all(|m| m.status.name() == "agreed"));
    // And the order continues where it stopped.
    assert_eq!(
        c.broadcast(&req("run-1", &["a"], json!("next")))
            .unwrap()
            .seq,
        6
    );
}

#[test]
fn invalid_messages_are_refused_with_what_failed_and_not_appended() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = Coordinator::embedded(&store).unwrap();
    let schema = json!({
        "type": "object",
        "required": ["amount", "to"],
        "properties": {"amount": {"type": "number"}, "to": {"type": "string"}}
    });
    let mut r = req("pay-1", &["checker"], json!({"amount": "ten"}));
    r.schema = Some(schema.clone());
    let e = c.broadcast(&r).unwrap_err();
    assert_eq!(e.code(), "invalid_message");
    let text = e.to_string();
    assert!(
        text.contains("pay-1") && text.contains("/amount") && text.contains("\"to\""),
        "{text}"
    );
    assert!(text.contains("not appended"), "{text}");
    assert!(
        c.status("pay-1").unwrap().is_empty(),
        "an invalid message is not appended"
    );

    r.message = json!({"amount": 10, "to": "acct-9"});
    assert_eq!(c.broadcast(&r).unwrap().seq, 1);

    let mut bad_schema = req("pay-1", &["checker"], json!({}));
    bad_schema.schema = Some(json!({"type": "no-such-type"}));
    assert_eq!(
        c.broadcast(&bad_schema).unwrap_err().code(),
        "invalid_argument"
    );

    let mut q = req("pay-1", &["a", "b"], json!({}));
    q.quorum = Some(3);
    let e = c.broadcast(&q).unwrap_err();
    assert!(
        e.to_string()
            .contains("quorum 3 is out of range: expected 1 to 2"),
        "{e}"
    );
    let e = c
        .broadcast(&req("pay-1", &["a", "a"], json!({})))
        .unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
    let e = c.broadcast(&req("pay-1", &[], json!({}))).unwrap_err();
    assert!(e.to_string().contains("no target agents"), "{e}");
    assert_eq!(c.status("pay-1").unwrap().len(), 1);

    let id = c.status("pay-1").unwrap()[0].id.clone();
    let e = c.acknowledge(&id, "intruder", None).unwrap_err();
    assert_eq!(e.code(), "not_a_target");
    assert!(
        e.to_string().contains("intruder") && e.to_string().contains("checker"),
        "{e}"
    );
    let unknown = ulid::Ulid::new().to_string();
    assert_eq!(
        c.acknowledge(&unknown, "checker", None).unwrap_err().code(),
        "message_not_found"
    );
    assert_eq!(
        c.acknowledge("not-an-id", "checker", None)
            .unwrap_err()
            .code(),
        "message_not_found"
    );
}

#[test]
fn split_votes_and_timeouts_are_consensus_violations_handed_to_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = Coordinator::embedded(&store).unwrap();

    // Votes: 3 targets, quorum 2; "yes", "no", "maybe" leaves no value able to reach 2.
    let split = c
        .broadcast(&req("vote-1", &["a", "b", "c"], json!("deploy?")))
        .unwrap();
    c.acknowledge(&split.id, "a", Some(json!("yes"))).unwrap();
    assert_eq!(
        c.acknowledge(&split.id, "b", Some(json!("no"))).unwrap(),
        MessageStatus::Pending
    );
    let s = c.acknowledge(&split.id, "c", Some(json!("maybe"))).unwrap();
    assert!(matches!(s, MessageStatus::Violated { .. }), "{s:?}");
    let e = c
        .await_agreement(&split.id, Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(e.code(), "consensus_violation");
    assert!(e.to_string().contains("split vote"), "{e}");

    // Same value from a quorum agrees on that value.
    let agreed = c
        .broadcast(&req("vote-1", &["a", "b", "c"], json!("ship?")))
        .unwrap();
    c.acknowledge(&agreed.id, "a", Some(json!({"go": true})))
        .unwrap();
    c.acknowledge(&agreed.id, "b", Some(json!("no"))).unwrap();
    c.acknowledge(&agreed.id, "c", Some(json!({"go": true})))
        .unwrap();
    let m = c
        .await_agreement(&agreed.id, Duration::from_secs(1))
        .unwrap();
    assert!(
        matches!(&m.status, MessageStatus::Agreed { value: Some(v), .. } if v == r#"{"go":true}"#)
    );

    // Nobody answers: a timeout, decided through the log, recorded once.
    let silent = c
        .broadcast(&req("vote-1", &["a"], json!("anyone?")))
        .unwrap();
    let t0 = std::time::Instant::now();
    let e = c
        .await_agreement(&silent.id, Duration::from_millis(300))
        .unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(e.to_string().contains("timeout"), "{e}");
    let again = c
        .await_agreement(&silent.id, Duration::from_millis(10))
        .unwrap_err();
    // An acknowledgement after the outcome changes nothing.
    assert!(matches!(
        c.acknowledge(&silent.id, "a", None).unwrap(),
        MessageStatus::Violated { .. }
    ));

    let failures = store.failures(Some("vote-1")).unwrap();
    let violations: Vec<_> = failures
        .iter()
        .filter(|f| f.kind == Trigger::ConsensusViolation)
        .collect();
    assert_eq!(
        violations.len(),
        2,
        "one failure per violated message: {failures:?}"
    );
    assert!(violations
        .iter()
        .any(|f| f.key.as_deref() == Some(split.id.as_str())));
    let timed_out = violations
        .iter()
        .find(|f| f.key.as_deref() == Some(silent.id.as_str()))
        .unwrap();
    assert!(again.to_string().contains(&timed_out.id), "{again}");
    assert_eq!(timed_out.agent, "planner");

    // Each decision is one event of the execution's feed, told once, with the state machine's
    // write: the split vote and the timeout violated, the quorum reached.
    let filter =
        omium_core::events::EventFilter::new(vec!["consensus.".into()], Some("vote-1".into()))
            .unwrap();
    let decided: Vec<(String, serde_json::Value)> = store
        .events(0, 100, &filter)
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.kind, e.data["messages"][0]["message_id"].clone()))
        .collect();
    assert_eq!(
        decided,
        [
            ("consensus.violated".to_string(), json!(split.id)),
            ("consensus.reached".to_string(), json!(agreed.id)),
            ("consensus.violated".to_string(), json!(silent.id)),
        ]
    );
}

#[test]
fn one_store_runs_one_group_shared_by_its_coordinators() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = Coordinator::embedded(&store).unwrap();
    let b = Coordinator::embedded(&store).unwrap();
    let placed = a
        .broadcast(&omium_core::consensus::BroadcastRequest {
            execution_id: "shared".into(),
            sender: "planner".into(),
            targets: vec!["coder".into()],
            message: serde_json::json!({"plan": 1}),
            ..Default::default()
        })
        .unwrap();
    b.acknowledge(&placed.id, "coder", None).unwrap();
    assert_eq!(a.message(&placed.id).unwrap().status.name(), "agreed");
    // A second Raft node on the same store would write the same log: refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(omium_core::consensus::Engine::start(
            &store,
            1,
            omium_core::consensus::network::NoNetwork,
        ))
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("already runs a consensus group"),
        "{e}"
    );
    // The group stops with its last coordinator and starts again on demand.
    drop((a, b));
    let c = Coordinator::embedded(&store).unwrap();
    assert_eq!(c.status("shared").unwrap().len(), 1);
}

#[test]
fn bad_node_addresses_get_clear_errors() {
    for (addr, why) in [
        ("127.0.0.1", "has no port"),
        ("127.0.0.1:99999", "no valid port"),
        ("https://x:1", "https"),
    ] {
        let e = Coordinator::open(
            None,
            CoordinatorConfig::Cluster {
                nodes: vec![addr.into()],
            },
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains(why) && e.to_string().contains(addr),
            "{e}"
        );
    }
}

/// Three nodes in this process, each with its own store, talking HTTP/2 on 127.0.0.1.
#[test]
fn a_three_node_cluster_agrees_and_survives_losing_its_leader() {
    let cluster = common::Nodes::new(4);
    let rt = &cluster.rt;
    let mut nodes = cluster.three();
    let admin = Coordinator::open(
        None,
        CoordinatorConfig::Cluster {
            nodes: vec![nodes[0].as_ref().unwrap().addr().to_string()],
        },
    )
    .unwrap();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().addr().to_string())
        .collect();
    let status = ClusterStatus::of(nodes[0].as_ref().unwrap().engine());

    // A client that knows only a follower still gets through (it follows the leader).
    let c = Coordinator::open(
        None,
        CoordinatorConfig::Cluster {
            nodes: vec![addrs[2].clone()],
        },
    )
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        let b = c
            .broadcast(&req("cluster-1", &["a", "b"], json!(i)))
            .unwrap();
        assert_eq!(b.seq, i + 1);
        c.acknowledge(&b.id, "a", None).unwrap();
        c.acknowledge(&b.id, "b", None).unwrap();
        c.await_agreement(&b.id, Duration::from_secs(30)).unwrap();
        ids.push(b.id);
    }
    // Kill the leader: the others elect a new one and nothing agreed is lost.
    let leader = status.leader.unwrap() as usize - 1;
    let t0 = std::time::Instant::now();
    rt.block_on(nodes[leader].take().unwrap().shutdown());
    let c = Coordinator::open(
        None,
        CoordinatorConfig::Cluster {
            nodes: addrs.clone(),
        },
    )
    .unwrap();
    let b = c
        .broadcast(&req("cluster-1", &["a"], json!("after failover")))
        .unwrap();
    eprintln!("first commit after the leader stopped: {:?}", t0.elapsed());
    assert_eq!(b.seq, 11);
    let listed = c.status("cluster-1").unwrap();
    assert_eq!(listed.len(), 11);
    assert_eq!(
        listed[..10]
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        ids
    );

    // A fourth node joins and catches up with everything agreed so far.
    let survivor = nodes.iter().flatten().next().unwrap();
    let new_leader = ClusterStatus::of(survivor.engine()).leader.unwrap() as usize - 1;
    let l = nodes[new_leader].as_ref().unwrap();
    let n4 = cluster.start(3, Some(l.addr().to_string()));
    // Node 4 learns what was agreed, and that it is a voter, by replication: wait for both.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while n4.engine().reader().messages("cluster-1").unwrap().len() < 11
        || !ClusterStatus::of(n4.engine()).voters.contains(&4)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "node 4 did not catch up: {:?}",
            ClusterStatus::of(n4.engine())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(admin);
    rt.block_on(n4.shutdown());
    for n in nodes.into_iter().flatten() {
        rt.block_on(n.shutdown());
    }
}

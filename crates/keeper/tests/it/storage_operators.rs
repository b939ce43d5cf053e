//! Dashboard operators, their sessions and sign-in attempt counting in storage,
//! proven on SQLite and on PostgreSQL alike.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use keeper::storage::{OperatorRow, OperatorSessionRow, StoreError};
use testkit::on_both_databases;
use testkit::store::{micros, project, TestStore};

on_both_databases!(
    operators_are_unique_by_email,
    sessions_carry_their_operator_and_project_and_idle_ones_are_pruned,
    sign_in_attempts_count_per_window_once_each_under_concurrency,
);

fn operator(email: &str) -> OperatorRow {
    OperatorRow {
        id: keeper::ids::IdKind::Operator.generate(),
        email: email.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        created_by: None,
        created_at: micros(Utc::now()),
    }
}

fn session(
    token: u8,
    operator_id: &str,
    project_id: Option<&str>,
    seen: i64,
) -> OperatorSessionRow {
    let at = micros(Utc::now() - Duration::hours(seen));
    OperatorSessionRow {
        token_hash: vec![token; 32],
        operator_id: operator_id.to_owned(),
        email: String::new(),
        project_id: project_id.map(str::to_owned),
        created_at: at,
        last_seen_at: at,
    }
}

async fn operators_are_unique_by_email(s: TestStore) {
    let first = operator("ops@example.com");
    s.insert_operator(&first).await.expect("insert");
    let again = s.insert_operator(&operator("ops@example.com")).await;
    assert!(
        matches!(
            again,
            Err(StoreError::Conflict {
                constraint: "operators_email"
            })
        ),
        "{again:?}"
    );
    s.insert_operator(&operator("another@example.com"))
        .await
        .expect("another");
    let found = s
        .operator_by_email("ops@example.com")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.id, first.id);
    assert_eq!(found.created_at, first.created_at);
    assert!(s
        .operator_by_email("nobody@example.com")
        .await
        .expect("lookup")
        .is_none());
    let emails: Vec<String> = s
        .list_operators()
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.email)
        .collect();
    assert_eq!(emails, ["another@example.com", "ops@example.com"]);
}

async fn sessions_carry_their_operator_and_project_and_idle_ones_are_pruned(s: TestStore) {
    let p = project("acme");
    s.insert_project(&p).await.expect("project");
    let o = operator("ops@example.com");
    s.insert_operator(&o).await.expect("operator");
    s.insert_operator_session(&session(1, &o.id, None, 0))
        .await
        .expect("fresh");
    s.insert_operator_session(&session(2, &o.id, Some(&p.id), 13))
        .await
        .expect("idle");

    let fresh = s
        .operator_session(&[1; 32])
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(fresh.email, "ops@example.com", "joined from the operator");
    assert_eq!(fresh.project_id, None);
    assert!(s
        .set_operator_session_project(&[1; 32], &p.id)
        .await
        .expect("set"));
    assert!(!s
        .set_operator_session_project(&[9; 32], &p.id)
        .await
        .expect("no such"));
    let chosen = s
        .operator_session(&[1; 32])
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(chosen.project_id.as_deref(), Some(p.id.as_str()));

    // Use only moves last_seen_at forward.
    let later = micros(Utc::now() + Duration::minutes(5));
    s.touch_operator_session(&[1; 32], later)
        .await
        .expect("touch");
    s.touch_operator_session(&[1; 32], later - Duration::hours(1))
        .await
        .expect("touch");
    let touched = s
        .operator_session(&[1; 32])
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(touched.last_seen_at, later);

    // Sessions idle for longer than 12 hours go; the live one stays.
    let pruned = s
        .delete_operator_sessions_idle_before(Utc::now() - Duration::hours(12))
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    assert!(s.operator_session(&[2; 32]).await.expect("get").is_none());
    assert!(s.operator_session(&[1; 32]).await.expect("get").is_some());
    s.delete_operator_session(&[1; 32]).await.expect("delete");
    assert!(s.operator_session(&[1; 32]).await.expect("get").is_none());
}

async fn sign_in_attempts_count_per_window_once_each_under_concurrency(s: TestStore) {
    let window = Duration::minutes(15);
    let start = micros(Utc::now());
    let (n, since) = s
        .count_login_attempt("email:a@example.com", start, start - window)
        .await
        .expect("count");
    assert_eq!((n, since), (1, start));
    let next = start + Duration::minutes(1);
    let (n, since) = s
        .count_login_attempt("email:a@example.com", next, next - window)
        .await
        .expect("count");
    assert_eq!((n, since), (2, start), "the window keeps its start");
    // Once the window has passed, counting starts again.
    let after = start + Duration::minutes(16);
    let (n, since) = s
        .count_login_attempt("email:a@example.com", after, after - window)
        .await
        .expect("count");
    assert_eq!((n, since), (1, after));
    s.clear_login_failures("email:a@example.com")
        .await
        .expect("clear");
    let (n, _) = s
        .count_login_attempt("email:a@example.com", after, after - window)
        .await
        .expect("count");
    assert_eq!(n, 1);

    // Twenty at once: each gets its own count.
    let now = micros(Utc::now());
    let counts = futures::future::join_all(
        (0..20).map(|_| s.count_login_attempt("email:b@example.com", now, now - window)),
    )
    .await;
    let counts: BTreeSet<i64> = counts.into_iter().map(|c| c.expect("count").0).collect();
    assert_eq!(counts, (1..=20).collect::<BTreeSet<i64>>());

    // Windows that started long ago are forgotten.
    let forgotten = s
        .delete_login_failures_before(after + Duration::minutes(1))
        .await
        .expect("prune");
    assert_eq!(forgotten, 2);
}

//! Storage and vault behaviour, proven on SQLite and on PostgreSQL alike.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use keeper::storage::{
    AppSecretsUpdate, Cursor, DeleteAppOutcome, Direction, PageRequest, Sealed, StoreError,
    SEALED_COLUMNS,
};
use keeper::vault::{reseal_all, sealed_key_id, Keyring, Slot};
use secrecy::ExposeSecret as _;
use testkit::on_both_databases;
use testkit::store::{api_key, app, micros, project, TestStore};

on_both_databases!(
    migrations_are_idempotent_and_the_clock_is_sane,
    project_is_found_by_id_and_by_name,
    project_name_is_unique,
    first_project_is_bootstrapped_exactly_once_under_a_race,
    bootstrap_changes_nothing_once_a_project_exists,
    api_key_is_found_by_hash_and_records_use,
    api_key_hash_is_unique_and_disabled_keys_say_so,
    app_round_trips_and_is_invisible_to_other_projects,
    duplicate_client_id_conflicts_within_a_project_only,
    apps_paginate_newest_first_in_both_directions,
    app_secrets_update_changes_only_what_is_asked,
    app_with_connections_cannot_be_deleted,
    sealed_fields_walk_every_sealed_column_in_stable_order,
    reseal_field_only_replaces_the_value_it_saw,
    ciphertext_copied_to_another_row_does_not_open,
    rotation_reseals_everything_under_the_new_key,
);

async fn migrations_are_idempotent_and_the_clock_is_sane(s: TestStore) {
    s.migrate().await.expect("second migrate is a no-op");
    s.ping().await.expect("ping");
    let now = s.now().await.expect("now");
    assert!((now - Utc::now()).num_seconds().abs() < 5, "{now}");
    assert_eq!(s.count_projects().await.expect("count"), 0);
}

async fn project_is_found_by_id_and_by_name(s: TestStore) {
    let p = project("acme");
    s.insert_project(&p).await.expect("insert");
    let by_id = s
        .project_by_id(&p.id)
        .await
        .expect("by id")
        .expect("exists");
    assert_eq!(by_id.name, "acme");
    assert_eq!(by_id.webhook_secret, p.webhook_secret);
    assert_eq!(by_id.created_at, p.created_at, "microseconds survive");
    let by_name = s
        .project_by_name("acme")
        .await
        .expect("by name")
        .expect("exists");
    assert_eq!(by_name.id, p.id);
    assert!(s.project_by_name("other").await.expect("lookup").is_none());
    assert!(s
        .project_by_id("prj_missing")
        .await
        .expect("lookup")
        .is_none());
    assert_eq!(s.count_projects().await.expect("count"), 1);
}

async fn project_name_is_unique(s: TestStore) {
    s.insert_project(&project("acme")).await.expect("first");
    let err = s
        .insert_project(&project("acme"))
        .await
        .expect_err("same name");
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                constraint: "projects_name"
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.count_projects().await.expect("count"), 1);
}

async fn first_project_is_bootstrapped_exactly_once_under_a_race(s: TestStore) {
    let mut tasks = Vec::new();
    for i in 0..10u8 {
        let store = s.store.clone();
        tasks.push(tokio::spawn(async move {
            let p = project("default");
            let k = api_key(&p.id, i);
            let won = store
                .bootstrap_first_project(&p, &k)
                .await
                .expect("bootstrap");
            (won, k.key_hash)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (won, hash) = t.await.expect("task");
        if won {
            winners.push(hash);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one start creates the project");
    assert_eq!(s.count_projects().await.expect("count"), 1);
    let key = s
        .api_key_by_hash(&winners[0])
        .await
        .expect("lookup")
        .expect("the winner's key exists");
    let p = s
        .project_by_name("default")
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(key.project_id, p.id);
}

async fn bootstrap_changes_nothing_once_a_project_exists(s: TestStore) {
    s.insert_project(&project("made by hand"))
        .await
        .expect("insert");
    let p = project("default");
    let k = api_key(&p.id, 1);
    assert!(!s.bootstrap_first_project(&p, &k).await.expect("bootstrap"));
    assert!(s
        .project_by_name("default")
        .await
        .expect("lookup")
        .is_none());
    assert!(s
        .api_key_by_hash(&k.key_hash)
        .await
        .expect("lookup")
        .is_none());
}

async fn api_key_is_found_by_hash_and_records_use(s: TestStore) {
    let p = project("acme");
    s.insert_project(&p).await.expect("project");
    let k = api_key(&p.id, 7);
    s.insert_api_key(&k).await.expect("key");
    let found = s
        .api_key_by_hash(&[7; 32])
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.id, k.id);
    assert_eq!(found.prefix, "zk_abcd");
    assert_eq!(found.last_used_at, None);
    assert!(s.api_key_by_hash(&[8; 32]).await.expect("lookup").is_none());

    let later = micros(Utc::now() + Duration::seconds(10));
    s.touch_api_key(&k.id, later).await.expect("touch");
    let earlier = micros(Utc::now());
    s.touch_api_key(&k.id, earlier).await.expect("touch");
    let found = s
        .api_key_by_hash(&[7; 32])
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.last_used_at, Some(later), "last use never moves back");
}

async fn api_key_hash_is_unique_and_disabled_keys_say_so(s: TestStore) {
    let p = project("acme");
    s.insert_project(&p).await.expect("project");
    let mut disabled = api_key(&p.id, 3);
    let at = micros(Utc::now());
    disabled.disabled_at = Some(at);
    s.insert_api_key(&disabled).await.expect("key");
    let err = s
        .insert_api_key(&api_key(&p.id, 3))
        .await
        .expect_err("same hash");
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                constraint: "api_keys_key_hash"
            }
        ),
        "{err:?}"
    );
    let found = s
        .api_key_by_hash(&[3; 32])
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.disabled_at, Some(at));
}

async fn app_round_trips_and_is_invisible_to_other_projects(s: TestStore) {
    let mine = project("mine");
    let theirs = project("theirs");
    s.insert_project(&mine).await.expect("project");
    s.insert_project(&theirs).await.expect("project");
    let mut a = app(&mine.id, "client-1", Utc::now());
    a.webhook_secret = Some(Sealed(vec![9; 40]));
    a.kind = keeper::storage::AppKind::AccountLevel;
    s.insert_app(&a).await.expect("insert");

    let got = s
        .get_app(&mine.id, &a.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.client_id, "client-1");
    assert_eq!(got.client_secret, a.client_secret);
    assert_eq!(got.webhook_secret, a.webhook_secret);
    assert_eq!(got.kind, keeper::storage::AppKind::AccountLevel);
    assert_eq!(got.created_at, a.created_at);
    assert_eq!(got.connection_count, 0);
    assert_eq!(s.count_apps(&mine.id).await.expect("count"), 1);

    assert!(s.get_app(&theirs.id, &a.id).await.expect("get").is_none());
    assert_eq!(s.count_apps(&theirs.id).await.expect("count"), 0);
    let page = s
        .list_apps(
            &theirs.id,
            &PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .expect("list");
    assert!(page.items.is_empty() && !page.has_more);
    let update = AppSecretsUpdate {
        client_secret: Some(Sealed(vec![0; 40])),
        webhook_secret: None,
    };
    assert!(s
        .update_app_secrets(&theirs.id, &a.id, &update, Utc::now())
        .await
        .expect("update")
        .is_none());
    assert_eq!(
        s.delete_app(&theirs.id, &a.id).await.expect("delete"),
        DeleteAppOutcome::NotFound
    );
    assert!(s.get_app(&mine.id, &a.id).await.expect("get").is_some());
}

async fn duplicate_client_id_conflicts_within_a_project_only(s: TestStore) {
    let one = project("one");
    let two = project("two");
    s.insert_project(&one).await.expect("project");
    s.insert_project(&two).await.expect("project");
    s.insert_app(&app(&one.id, "same", Utc::now()))
        .await
        .expect("first");
    let err = s
        .insert_app(&app(&one.id, "same", Utc::now()))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                constraint: "apps_project_client_id"
            }
        ),
        "{err:?}"
    );
    s.insert_app(&app(&two.id, "same", Utc::now()))
        .await
        .expect("another project may use the same client_id");
}

async fn apps_paginate_newest_first_in_both_directions(s: TestStore) {
    let p = project("acme");
    let other = project("other");
    s.insert_project(&p).await.expect("project");
    s.insert_project(&other).await.expect("project");
    let base = micros(Utc::now()) - Duration::hours(1);
    let mut apps = Vec::new();
    for i in 0..7 {
        // Apps 3 and 4 share a timestamp: the id breaks the tie.
        let at = base + Duration::seconds(if i == 4 { 3 } else { i });
        let a = app(&p.id, &format!("client-{i}"), at);
        s.insert_app(&a).await.expect("insert");
        apps.push(a);
    }
    s.insert_app(&app(&other.id, "elsewhere", base + Duration::seconds(100)))
        .await
        .expect("other project's app");
    apps.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let expected: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
    let ids = |items: &[keeper::storage::AppRow]| -> Vec<String> {
        items.iter().map(|a| a.id.clone()).collect()
    };
    let cursor = |a: &keeper::storage::AppRow, direction| Cursor {
        created_at: a.created_at,
        id: a.id.clone(),
        direction,
    };
    let page = |cursor| PageRequest { cursor, limit: 3 };

    let first = s.list_apps(&p.id, &page(None)).await.expect("first page");
    assert_eq!(ids(&first.items), expected[0..3]);
    assert!(first.has_more);

    let last_of =
        |p: &keeper::storage::Page<_>| cursor(p.items.last().expect("item"), Direction::Older);
    let second = s
        .list_apps(&p.id, &page(Some(last_of(&first))))
        .await
        .expect("second page");
    assert_eq!(ids(&second.items), expected[3..6]);
    assert!(second.has_more);

    let third = s
        .list_apps(&p.id, &page(Some(last_of(&second))))
        .await
        .expect("third page");
    assert_eq!(ids(&third.items), expected[6..7]);
    assert!(!third.has_more);

    let back = s
        .list_apps(
            &p.id,
            &page(Some(cursor(&third.items[0], Direction::Newer))),
        )
        .await
        .expect("previous of third");
    assert_eq!(
        ids(&back.items),
        expected[3..6],
        "newest first going back too"
    );
    assert!(back.has_more);

    let back = s
        .list_apps(&p.id, &page(Some(cursor(&back.items[0], Direction::Newer))))
        .await
        .expect("previous of second");
    assert_eq!(ids(&back.items), expected[0..3]);
    assert!(!back.has_more);

    let all = s
        .list_apps(
            &p.id,
            &PageRequest {
                cursor: None,
                limit: 100,
            },
        )
        .await
        .expect("all");
    assert_eq!(ids(&all.items), expected);
    assert!(!all.has_more);
}

async fn app_secrets_update_changes_only_what_is_asked(s: TestStore) {
    let p = project("acme");
    s.insert_project(&p).await.expect("project");
    let created = micros(Utc::now()) - Duration::minutes(5);
    let a = app(&p.id, "c", created);
    s.insert_app(&a).await.expect("insert");

    let at = micros(Utc::now());
    let updated = s
        .update_app_secrets(
            &p.id,
            &a.id,
            &AppSecretsUpdate {
                client_secret: None,
                webhook_secret: Some(Some(Sealed(vec![5; 40]))),
            },
            at,
        )
        .await
        .expect("update")
        .expect("found");
    assert_eq!(updated.client_secret, a.client_secret, "left alone");
    assert_eq!(updated.webhook_secret, Some(Sealed(vec![5; 40])));
    assert_eq!(updated.updated_at, at);
    assert_eq!(updated.created_at, created);

    let updated = s
        .update_app_secrets(
            &p.id,
            &a.id,
            &AppSecretsUpdate {
                client_secret: Some(Sealed(vec![6; 40])),
                webhook_secret: None,
            },
            at,
        )
        .await
        .expect("update")
        .expect("found");
    assert_eq!(updated.client_secret, Sealed(vec![6; 40]));
    assert_eq!(
        updated.webhook_secret,
        Some(Sealed(vec![5; 40])),
        "left alone"
    );

    let updated = s
        .update_app_secrets(
            &p.id,
            &a.id,
            &AppSecretsUpdate {
                client_secret: None,
                webhook_secret: Some(None),
            },
            at,
        )
        .await
        .expect("update")
        .expect("found");
    assert_eq!(updated.webhook_secret, None, "removed");
    let stored = s.get_app(&p.id, &a.id).await.expect("get").expect("found");
    assert_eq!(stored.client_secret, Sealed(vec![6; 40]));
    assert_eq!(stored.webhook_secret, None);
    assert!(s
        .update_app_secrets(
            &p.id,
            "zoa_0000000000000000",
            &AppSecretsUpdate::default(),
            at
        )
        .await
        .expect("update")
        .is_none());
}

async fn app_with_connections_cannot_be_deleted(s: TestStore) {
    let p = project("acme");
    s.insert_project(&p).await.expect("project");
    let busy = app(&p.id, "busy", Utc::now());
    let idle = app(&p.id, "idle", Utc::now());
    s.insert_app(&busy).await.expect("insert");
    s.insert_app(&idle).await.expect("insert");
    s.insert_connection(&p.id, &busy.id, "user-1", None, None)
        .await;
    s.insert_connection(&p.id, &busy.id, "user-2", None, None)
        .await;

    let got = s
        .get_app(&p.id, &busy.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.connection_count, 2);
    assert_eq!(
        s.delete_app(&p.id, &busy.id).await.expect("delete"),
        DeleteAppOutcome::HasConnections
    );
    assert!(s.get_app(&p.id, &busy.id).await.expect("get").is_some());

    assert_eq!(
        s.delete_app(&p.id, &idle.id).await.expect("delete"),
        DeleteAppOutcome::Deleted
    );
    assert!(s.get_app(&p.id, &idle.id).await.expect("get").is_none());
    assert_eq!(
        s.delete_app(&p.id, &idle.id).await.expect("delete"),
        DeleteAppOutcome::NotFound
    );
}

async fn sealed_fields_walk_every_sealed_column_in_stable_order(s: TestStore) {
    let p1 = project("one");
    let p2 = project("two");
    s.insert_project(&p1).await.expect("project");
    s.insert_project(&p2).await.expect("project");
    // p1's secret was rotated: its previous secret is sealed too.
    assert!(s
        .rotate_project_webhook_secret(
            &p1.id,
            &p1.webhook_secret,
            &Sealed(vec![5; 40]),
            &Sealed(vec![6; 40]),
            Utc::now() + Duration::hours(1),
        )
        .await
        .expect("rotate"));
    let mut a1 = app(&p1.id, "a1", Utc::now());
    a1.webhook_secret = Some(Sealed(vec![4; 40]));
    let a2 = app(&p1.id, "a2", Utc::now());
    s.insert_app(&a1).await.expect("app");
    s.insert_app(&a2).await.expect("app");
    let c = s
        .insert_connection(
            &p1.id,
            &a1.id,
            "u",
            Some(&Sealed(vec![7; 40])),
            Some(&Sealed(vec![8; 40])),
        )
        .await;
    // A customer-managed connection's callback URL is sealed too.
    s.overwrite_sealed(
        "zoom_oauth_connections",
        "access_token_callback_url",
        &c,
        &[11; 40],
    )
    .await;
    // A connection whose tokens were erased has nothing to re-seal.
    s.insert_connection(&p1.id, &a2.id, "erased", None, None)
        .await;
    // A bot platform's verification secret; a Recall one without a secret has none.
    let platform = |id: &str, secret: Option<Sealed>| keeper::storage::BotPlatformRow {
        id: id.to_owned(),
        project_id: p2.id.clone(),
        platform: keeper::storage::Platform::Recall,
        name: "Recall".to_owned(),
        verification_secret: secret,
        query_token_hash: None,
        zoom_oauth_app_id: None,
        zak_user_id: None,
        onbehalf_metadata_key: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    s.insert_bot_platform(&platform("bpl_signed0000000001", Some(Sealed(vec![9; 40]))))
        .await
        .expect("platform");
    s.insert_bot_platform(&platform("bpl_tokenonly00000001", None))
        .await
        .expect("platform");
    // A connect session's PKCE verifier, kept while the user is at Zoom.
    let connect = keeper::storage::ConnectSessionRow {
        id: "zcs_atzoom0000000001".to_owned(),
        project_id: p2.id.clone(),
        app_id: a1.id.clone(),
        return_url: "https://example.com/".to_owned(),
        metadata: None,
        deduplication_key: None,
        is_local_recording_token_supported: None,
        is_onbehalf_token_supported: None,
        token_hash: vec![1; 32],
        state_hash: None,
        code_verifier: Some(Sealed(vec![10; 40])),
        status: keeper::storage::ConnectSessionStatus::Pending,
        connection_id: None,
        error: None,
        error_description: None,
        expires_at: Utc::now(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    s.insert_connect_session(&connect).await.expect("session");

    let mut seen = Vec::new();
    let mut after: Option<(&'static str, &'static str, String)> = None;
    loop {
        let batch = s
            .sealed_fields(after.as_ref().map(|(t, c, r)| (*t, *c, r.as_str())), 2)
            .await
            .expect("sealed fields");
        assert!(batch.len() <= 2);
        let Some(last) = batch.last() else { break };
        after = Some((last.table, last.column, last.row_id.clone()));
        seen.extend(
            batch
                .into_iter()
                .map(|f| (f.table, f.column, f.row_id, f.value)),
        );
    }
    let keys: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|(t, c, r, _)| (*t, *c, r.as_str()))
        .collect();
    let mut projects = [p1.id.as_str(), p2.id.as_str()];
    projects.sort();
    let mut apps = [a1.id.as_str(), a2.id.as_str()];
    apps.sort();
    let expected = vec![
        (
            "bot_platforms",
            "verification_secret",
            "bpl_signed0000000001",
        ),
        ("connect_sessions", "code_verifier", "zcs_atzoom0000000001"),
        ("projects", "previous_webhook_secret", p1.id.as_str()),
        ("projects", "webhook_secret", projects[0]),
        ("projects", "webhook_secret", projects[1]),
        ("zoom_oauth_apps", "client_secret", apps[0]),
        ("zoom_oauth_apps", "client_secret", apps[1]),
        ("zoom_oauth_apps", "webhook_secret", a1.id.as_str()),
        ("zoom_oauth_connections", "access_token", c.as_str()),
        (
            "zoom_oauth_connections",
            "access_token_callback_url",
            c.as_str(),
        ),
        ("zoom_oauth_connections", "refresh_token", c.as_str()),
    ];
    assert_eq!(keys, expected);
    let columns: HashSet<(&str, &str)> = keys.iter().map(|(t, c, _)| (*t, *c)).collect();
    assert_eq!(
        columns.len(),
        SEALED_COLUMNS.len(),
        "every sealed column is covered"
    );
    let refresh = seen
        .iter()
        .find(|f| f.1 == "refresh_token")
        .expect("refresh");
    assert_eq!(refresh.3, Sealed(vec![7; 40]));
}

async fn reseal_field_only_replaces_the_value_it_saw(s: TestStore) {
    let p = project("acme");
    s.insert_project(&p).await.expect("project");
    let a = app(&p.id, "c", Utc::now());
    s.insert_app(&a).await.expect("app");
    let fields = s.sealed_fields(None, 100).await.expect("fields");
    let field = fields
        .iter()
        .find(|f| f.table == "zoom_oauth_apps" && f.column == "client_secret")
        .expect("client secret");
    assert!(s
        .reseal_field(field, &Sealed(vec![1; 40]))
        .await
        .expect("reseal"));
    assert!(
        !s.reseal_field(field, &Sealed(vec![2; 40]))
            .await
            .expect("reseal"),
        "the value changed since it was read"
    );
    let stored = s.get_app(&p.id, &a.id).await.expect("get").expect("found");
    assert_eq!(stored.client_secret, Sealed(vec![1; 40]));
}

fn client_secret_slot(row_id: &str) -> Slot<'_> {
    Slot {
        table: "zoom_oauth_apps",
        column: "client_secret",
        row_id,
    }
}

async fn ciphertext_copied_to_another_row_does_not_open(s: TestStore) {
    let vault = Keyring::generate().vault();
    let p = project("acme");
    s.insert_project(&p).await.expect("project");
    let mut a = app(&p.id, "a", Utc::now());
    a.client_secret = vault.seal_str(client_secret_slot(&a.id), "secret-a");
    let mut b = app(&p.id, "b", Utc::now());
    b.client_secret = vault.seal_str(client_secret_slot(&b.id), "secret-b");
    s.insert_app(&a).await.expect("app");
    s.insert_app(&b).await.expect("app");

    let stored = s.get_app(&p.id, &a.id).await.expect("get").expect("found");
    let opened = vault
        .open_str(client_secret_slot(&a.id), &stored.client_secret)
        .expect("opens in its own row");
    assert_eq!(opened.expose_secret(), "secret-a");

    // Someone with database access copies a's secret into b's row.
    s.overwrite_sealed(
        "zoom_oauth_apps",
        "client_secret",
        &b.id,
        &stored.client_secret.0,
    )
    .await;
    let moved = s.get_app(&p.id, &b.id).await.expect("get").expect("found");
    let err = vault
        .open(client_secret_slot(&b.id), &moved.client_secret)
        .expect_err("does not open in another row");
    assert!(err.to_string().contains(&b.id), "{err}");

    // A flipped byte does not open either.
    let mut tampered = stored.client_secret.0.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    s.overwrite_sealed("zoom_oauth_apps", "client_secret", &a.id, &tampered)
        .await;
    let stored = s.get_app(&p.id, &a.id).await.expect("get").expect("found");
    assert!(vault
        .open(client_secret_slot(&a.id), &stored.client_secret)
        .is_err());
}

async fn rotation_reseals_everything_under_the_new_key(s: TestStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("master.key");
    let mut ring = Keyring::load_or_create(&key_file).expect("key file");
    let old_vault = ring.vault();

    // Secrets of every kind, sealed under key 1.
    let mut p = project("acme");
    p.webhook_secret = old_vault.seal(
        Slot {
            table: "projects",
            column: "webhook_secret",
            row_id: &p.id,
        },
        &[42; 32],
    );
    s.insert_project(&p).await.expect("project");
    let mut a = app(&p.id, "c", Utc::now());
    a.client_secret = old_vault.seal_str(client_secret_slot(&a.id), "client-secret");
    a.webhook_secret = Some(old_vault.seal_str(
        Slot {
            table: "zoom_oauth_apps",
            column: "webhook_secret",
            row_id: &a.id,
        },
        "webhook-secret",
    ));
    s.insert_app(&a).await.expect("app");
    let c = s.insert_connection(&p.id, &a.id, "u", None, None).await;
    let refresh = old_vault.seal_str(
        Slot {
            table: "zoom_oauth_connections",
            column: "refresh_token",
            row_id: &c,
        },
        "refresh-token",
    );
    let access = old_vault.seal_str(
        Slot {
            table: "zoom_oauth_connections",
            column: "access_token",
            row_id: &c,
        },
        "access-token",
    );
    s.overwrite_sealed("zoom_oauth_connections", "refresh_token", &c, &refresh.0)
        .await;
    s.overwrite_sealed("zoom_oauth_connections", "access_token", &c, &access.0)
        .await;
    let callback_url = old_vault.seal_str(
        Slot {
            table: "zoom_oauth_connections",
            column: "access_token_callback_url",
            row_id: &c,
        },
        "https://tokens.example.com/zoom?auth_token=s3cret",
    );
    s.overwrite_sealed(
        "zoom_oauth_connections",
        "access_token_callback_url",
        &c,
        &callback_url.0,
    )
    .await;

    // Step 1: a new active key; old values still open with the saved ring.
    let new_id = ring.add_new_active_key();
    ring.save(&key_file).expect("save");
    let during = Keyring::load_or_create(&key_file).expect("reload").vault();
    assert_eq!(during.active_key_id(), new_id);
    let stored = s.get_app(&p.id, &a.id).await.expect("get").expect("found");
    assert_eq!(
        during
            .open_str(client_secret_slot(&a.id), &stored.client_secret)
            .expect("old key still reads")
            .expose_secret(),
        "client-secret"
    );

    // Step 2: re-seal. Six values change; a second run changes none.
    assert_eq!(reseal_all(&*s.store, &during).await.expect("reseal"), 6);
    assert_eq!(reseal_all(&*s.store, &during).await.expect("re-run"), 0);

    // Step 3: retire the old key. Everything opens with the new key alone…
    ring.retire_all_but_active();
    ring.save(&key_file).expect("save");
    let after = Keyring::load_or_create(&key_file).expect("reload").vault();
    assert_eq!(after.active_key_id(), new_id);
    let fields = s.sealed_fields(None, 100).await.expect("fields");
    assert_eq!(fields.len(), 6);
    let expected: std::collections::HashMap<(&str, &str), &[u8]> = [
        (("projects", "webhook_secret"), &[42u8; 32][..]),
        (("zoom_oauth_apps", "client_secret"), b"client-secret"),
        (("zoom_oauth_apps", "webhook_secret"), b"webhook-secret"),
        (
            ("zoom_oauth_connections", "refresh_token"),
            b"refresh-token",
        ),
        (("zoom_oauth_connections", "access_token"), b"access-token"),
        (
            ("zoom_oauth_connections", "access_token_callback_url"),
            b"https://tokens.example.com/zoom?auth_token=s3cret",
        ),
    ]
    .into_iter()
    .collect();
    for f in &fields {
        assert_eq!(sealed_key_id(&f.value), Some(new_id));
        let slot = Slot {
            table: f.table,
            column: f.column,
            row_id: &f.row_id,
        };
        let plain = after.open(slot, &f.value).expect("opens with the new key");
        assert_eq!(plain.expose_secret(), expected[&(f.table, f.column)]);
        // …and no longer with the old one.
        assert!(old_vault.open(slot, &f.value).is_err());
    }
}

#[tokio::test]
async fn open_store_picks_sqlite_for_paths_and_sqlite_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested").join("plain.db");
    let store = keeper::storage::open_store(path.to_str().expect("utf-8"))
        .await
        .expect("open by path");
    assert_eq!(store.backend(), "sqlite");
    store.migrate().await.expect("migrate");
    assert!(path.exists(), "file and directory created");
    let url = format!("sqlite://{}", dir.path().join("url.db").display());
    let store = keeper::storage::open_store(&url)
        .await
        .expect("open by url");
    assert_eq!(store.backend(), "sqlite");
    store.migrate().await.expect("migrate");
    assert!(keeper::storage::is_postgres_url("postgresql://u@h/db"));
    assert!(keeper::storage::is_postgres_url("postgres://u@h/db"));
    assert!(!keeper::storage::is_postgres_url("sqlite:./x.db"));
}

// Zoom OAuth connections (issue 4).

mod connections {
    use std::collections::HashMap;
    use std::time::Duration as StdDuration;

    use chrono::{Duration, Utc};
    use keeper::storage::{
        ConnectionFilter, ConnectionRow, ConnectionSettingsUpdate, ConnectionState, Cursor,
        DeleteAppOutcome, Direction, DisconnectOutcome, FailureData, GrantReplacement, PageRequest,
        RefreshedTokens, Sealed, StoreError,
    };

    use testkit::store::{app, connection, event, micros, project, state_change, TestStore};

    const LEASE: StdDuration = StdDuration::from_secs(60);

    /// A project with one app; returns their ids.
    async fn project_and_app(s: &TestStore) -> (String, String) {
        let p = project("acme");
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "client", Utc::now());
        s.insert_app(&a).await.expect("app");
        (p.id, a.id)
    }

    fn failure(code: &str) -> FailureData {
        FailureData {
            error: "Zoom no longer accepts this connection's refresh token.".to_owned(),
            code: code.to_owned(),
            timestamp: Utc::now(),
        }
    }

    fn refreshed(tag: &str) -> RefreshedTokens {
        RefreshedTokens {
            refresh_token: Sealed(format!("refresh {tag}").into_bytes()),
            access_token: Sealed(format!("access {tag}").into_bytes()),
            access_token_expires_at: micros(Utc::now() + Duration::hours(1)),
            refresh_due_at: micros(Utc::now() + Duration::days(30)),
            scopes: None,
        }
    }

    fn conflict_name(err: StoreError) -> &'static str {
        match err {
            StoreError::Conflict { constraint } => constraint,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    pub async fn connection_round_trips_and_conflicts_on_user_and_deduplication_key(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let mut c = connection(&p, &a, "user-1", Utc::now());
        c.deduplication_key = Some("dedupe-1".to_owned());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");

        let got = s
            .get_connection(&p, &c.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.user_id, "user-1");
        assert_eq!(got.state, ConnectionState::Connected);
        assert_eq!(got.scopes, c.scopes);
        assert_eq!(got.metadata, c.metadata);
        assert_eq!(got.refresh_token, c.refresh_token);
        assert_eq!(got.access_token, c.access_token);
        assert_eq!(got.access_token_expires_at, c.access_token_expires_at);
        assert_eq!(got.refresh_due_at, c.refresh_due_at);
        assert_eq!(got.created_at, c.created_at);
        assert_eq!(got.fence, 0);
        assert!(got.is_local_recording_token_supported);
        assert!(!got.is_onbehalf_token_supported);
        assert!(s
            .get_connection("prj_other", &c.id)
            .await
            .expect("get")
            .is_none());
        let by_id = s
            .connection_by_id(&c.id)
            .await
            .expect("by id")
            .expect("found");
        assert_eq!(by_id.project_id, p);
        let by_user = s
            .connection_by_user(&a, "user-1")
            .await
            .expect("by user")
            .expect("found");
        assert_eq!(by_user.id, c.id);
        let by_key = s
            .connection_by_deduplication_key(&a, "dedupe-1")
            .await
            .expect("by key")
            .expect("found");
        assert_eq!(by_key.id, c.id);
        assert!(s
            .connection_by_user(&a, "user-2")
            .await
            .expect("by user")
            .is_none());

        let same_user = connection(&p, &a, "user-1", Utc::now());
        let err = s
            .store
            .insert_connection(&same_user, &event("created"), None)
            .await
            .expect_err("same user");
        assert_eq!(conflict_name(err), "connections_app_user_id");
        let mut same_key = connection(&p, &a, "user-2", Utc::now());
        same_key.deduplication_key = Some("dedupe-1".to_owned());
        let err = s
            .store
            .insert_connection(&same_key, &event("created"), None)
            .await
            .expect_err("same key");
        assert_eq!(conflict_name(err), "connections_app_deduplication_key");
        // Without a key, any number of connections coexist.
        s.store
            .insert_connection(
                &connection(&p, &a, "user-2", Utc::now()),
                &event("created"),
                None,
            )
            .await
            .expect("no key");
        s.store
            .insert_connection(
                &connection(&p, &a, "user-3", Utc::now()),
                &event("created"),
                None,
            )
            .await
            .expect("no key");
        // A failed insert leaves no event behind.
        assert_eq!(s.count_rows("connection_events", None).await, 3);
        assert_eq!(
            s.delete_app(&p, &a).await.expect("delete app"),
            DeleteAppOutcome::HasConnections
        );
    }

    pub async fn connections_filter_and_paginate_in_both_directions(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let other_app = app(&p, "second", Utc::now());
        s.insert_app(&other_app).await.expect("app");
        let other = project("other");
        s.insert_project(&other).await.expect("project");
        let elsewhere = app(&other.id, "client", Utc::now());
        s.insert_app(&elsewhere).await.expect("app");
        s.store
            .insert_connection(
                &connection(&other.id, &elsewhere.id, "user-0", Utc::now()),
                &event("created"),
                None,
            )
            .await
            .expect("other project");

        let base = micros(Utc::now()) - Duration::hours(1);
        let mut all = Vec::new();
        for i in 0..7i64 {
            // 3 and 4 share a timestamp: the id breaks the tie.
            let at = base + Duration::seconds(if i == 4 { 3 } else { i });
            let app_id = if i % 2 == 0 { &a } else { &other_app.id };
            let mut c = connection(&p, app_id, &format!("user-{i}"), at);
            c.account_id = if i < 3 { "acct_a" } else { "acct_b" }.to_owned();
            c.deduplication_key = Some(format!("key-{i}"));
            s.store
                .insert_connection(&c, &event("created"), None)
                .await
                .expect("insert");
            all.push(c);
        }
        s.disconnect_connection(
            &all[5].id,
            None,
            &failure("invalid_grant"),
            &event("disconnected"),
            None,
        )
        .await
        .expect("disconnect");
        all.sort_by(|x, y| (y.created_at, &y.id).cmp(&(x.created_at, &x.id)));
        let expected: Vec<String> = all.iter().map(|c| c.id.clone()).collect();
        let ids = |items: &[ConnectionRow]| -> Vec<String> {
            items.iter().map(|c| c.id.clone()).collect()
        };
        let first = |limit| PageRequest {
            cursor: None,
            limit,
        };

        let everything = s
            .list_connections(&p, &ConnectionFilter::default(), &first(100))
            .await
            .expect("list");
        assert_eq!(ids(&everything.items), expected);
        assert!(!everything.has_more);

        // Forward in pages of 3, then back.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = s
                .list_connections(
                    &p,
                    &ConnectionFilter::default(),
                    &PageRequest {
                        cursor: cursor.clone(),
                        limit: 3,
                    },
                )
                .await
                .expect("page");
            seen.extend(ids(&page.items));
            let Some(last) = page.items.last() else { break };
            cursor = Some(Cursor {
                created_at: last.created_at,
                id: last.id.clone(),
                direction: Direction::Older,
            });
            if !page.has_more {
                break;
            }
        }
        assert_eq!(seen, expected);
        let back = s
            .list_connections(
                &p,
                &ConnectionFilter::default(),
                &PageRequest {
                    cursor: Some(Cursor {
                        created_at: all[5].created_at,
                        id: all[5].id.clone(),
                        direction: Direction::Newer,
                    }),
                    limit: 3,
                },
            )
            .await
            .expect("previous page");
        assert_eq!(ids(&back.items), expected[2..5].to_vec());
        assert!(back.has_more);

        let filtered = |filter: ConnectionFilter| {
            let s = &s;
            let p = p.clone();
            async move {
                let page = s
                    .list_connections(&p, &filter, &first(100))
                    .await
                    .expect("filtered list");
                let mut got = ids(&page.items);
                got.sort();
                got
            }
        };
        let matching = |pred: &dyn Fn(&ConnectionRow) -> bool| {
            let mut want: Vec<String> = all
                .iter()
                .filter(|c| pred(c))
                .map(|c| c.id.clone())
                .collect();
            want.sort();
            want
        };
        assert_eq!(
            filtered(ConnectionFilter {
                app_id: Some(a.clone()),
                ..Default::default()
            })
            .await,
            matching(&|c| c.app_id == a)
        );
        assert_eq!(
            filtered(ConnectionFilter {
                user_id: Some("user-2".to_owned()),
                ..Default::default()
            })
            .await,
            matching(&|c| c.user_id == "user-2")
        );
        assert_eq!(
            filtered(ConnectionFilter {
                account_id: Some("acct_b".to_owned()),
                ..Default::default()
            })
            .await,
            matching(&|c| c.account_id == "acct_b")
        );
        let disconnected_id = all
            .iter()
            .find(|c| c.user_id == "user-5")
            .map(|c| c.id.clone())
            .expect("user-5");
        assert_eq!(
            filtered(ConnectionFilter {
                state: Some(ConnectionState::Disconnected),
                ..Default::default()
            })
            .await,
            vec![disconnected_id.clone()]
        );
        assert_eq!(
            filtered(ConnectionFilter {
                state: Some(ConnectionState::Connected),
                ..Default::default()
            })
            .await
            .len(),
            6
        );
        assert_eq!(
            filtered(ConnectionFilter {
                deduplication_key: Some("key-3".to_owned()),
                app_id: Some(other_app.id.clone()),
                ..Default::default()
            })
            .await,
            matching(&|c| c.user_id == "user-3")
        );
        assert!(filtered(ConnectionFilter {
            deduplication_key: Some("key-3".to_owned()),
            app_id: Some(a.clone()),
            ..Default::default()
        })
        .await
        .is_empty());
    }

    pub async fn grant_replacement_keeps_the_id_bumps_the_fence_and_writes_event_and_outbox(
        s: TestStore,
    ) {
        let (p, a) = project_and_app(&s).await;
        let c = connection(&p, &a, "user-1", Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        s.insert_meeting(
            &p,
            &a,
            "85012345678",
            &c.id,
            Utc::now() + Duration::hours(2),
        )
        .await;
        let leased = s
            .claim_connection_lease(&c.id, "worker-a", LEASE)
            .await
            .expect("claim")
            .expect("claimed");
        s.disconnect_connection(
            &c.id,
            None,
            &failure("invalid_grant"),
            &event("disconnected"),
            Some(&state_change(&c.id, "disconnected")),
        )
        .await
        .expect("disconnect");

        let mut grant = GrantReplacement {
            user_id: "user-1".to_owned(),
            account_id: "acct_1".to_owned(),
            email: Some("new@example.com".to_owned()),
            pmi: None,
            personal_meeting_url: None,
            metadata: Some(serde_json::json!({ "team": "red" })),
            deduplication_key: Some("dedupe".to_owned()),
            is_local_recording_token_supported: false,
            is_onbehalf_token_supported: true,
            scopes: vec!["user:read:zak".to_owned()],
            refresh_token: Sealed(b"new refresh".to_vec()),
            access_token: Sealed(b"new access".to_vec()),
            access_token_expires_at: micros(Utc::now() + Duration::hours(1)),
            refresh_due_at: micros(Utc::now() + Duration::days(30)),
            next_sync_at: Some(micros(Utc::now())),
            clear_meetings: false,
            keep_state: false,
            expected_fence: None,
        };
        let back = s
            .replace_connection_grant(
                &p,
                &c.id,
                &grant,
                &event("reconnected"),
                Some(&state_change(&c.id, "connected")),
            )
            .await
            .expect("replace")
            .expect("exists");
        assert_eq!(back.id, c.id, "same id");
        assert_eq!(back.state, ConnectionState::Connected);
        assert!(back.connection_failure_data.is_none());
        assert!(back.lease_owner.is_none() && back.lease_until.is_none());
        assert!(back.fence > leased.fence, "fence bumped past the old lease");
        assert_eq!(back.refresh_token, Some(grant.refresh_token.clone()));
        assert_eq!(back.access_token, Some(grant.access_token.clone()));
        assert_eq!(back.email.as_deref(), Some("new@example.com"));
        assert_eq!(back.scopes, grant.scopes);
        assert_eq!(back.metadata, grant.metadata);
        assert_eq!(back.deduplication_key.as_deref(), Some("dedupe"));
        assert!(!back.is_local_recording_token_supported);
        assert!(back.is_onbehalf_token_supported);
        assert_eq!(back.refresh_due_at, Some(grant.refresh_due_at));
        assert_eq!(s.count_rows("zoom_meetings", Some(&c.id)).await, 1, "kept");
        // The old lease's write-back is refused.
        assert!(!s
            .store_refreshed_tokens(&c.id, leased.fence, &refreshed("stale"), None)
            .await
            .expect("stale write"));
        let outbox = s.list_outbox_events(&p, 10).await.expect("outbox");
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox[0].payload["state"], "connected", "newest first");
        assert_eq!(outbox[0].trigger, "zoom_oauth_connection.state_change");
        assert!(outbox[0].dispatched_at.is_none());
        assert!(uuid::Uuid::parse_str(&outbox[0].id).is_ok());

        // Rebound to another Zoom user: the meeting index goes.
        grant.user_id = "user-9".to_owned();
        grant.clear_meetings = true;
        let rebound = s
            .replace_connection_grant(&p, &c.id, &grant, &event("rebound"), None)
            .await
            .expect("rebind")
            .expect("exists");
        assert_eq!(rebound.user_id, "user-9");
        assert_eq!(rebound.fence, back.fence + 1);
        assert_eq!(
            s.count_rows("zoom_meetings", Some(&c.id)).await,
            0,
            "cleared"
        );
        assert_eq!(s.list_outbox_events(&p, 10).await.expect("outbox").len(), 2);
        let kinds: Vec<String> = s
            .list_connection_events(
                &p,
                &c.id,
                &PageRequest {
                    cursor: None,
                    limit: 10,
                },
            )
            .await
            .expect("events")
            .items
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["rebound", "reconnected", "disconnected", "created"]);

        // Another connection's user or key cannot be taken over.
        let other = connection(&p, &a, "user-2", Utc::now());
        s.store
            .insert_connection(&other, &event("created"), None)
            .await
            .expect("insert");
        grant.deduplication_key = None;
        let err = s
            .replace_connection_grant(&p, &other.id, &grant, &event("rebound"), None)
            .await
            .expect_err("user-9 is taken");
        assert_eq!(conflict_name(err), "connections_app_user_id");
        grant.user_id = "user-2".to_owned();
        grant.deduplication_key = Some("dedupe".to_owned());
        let err = s
            .replace_connection_grant(&p, &other.id, &grant, &event("rebound"), None)
            .await
            .expect_err("dedupe is taken");
        assert_eq!(conflict_name(err), "connections_app_deduplication_key");
        assert!(s
            .replace_connection_grant(&p, "zoc_missing", &grant, &event("rebound"), None)
            .await
            .expect("missing")
            .is_none());
        assert!(s
            .replace_connection_grant("prj_other", &c.id, &grant, &event("rebound"), None)
            .await
            .expect("other project")
            .is_none());
    }

    pub async fn settings_update_changes_only_what_is_asked_and_conflicts_on_a_taken_key(
        s: TestStore,
    ) {
        let (p, a) = project_and_app(&s).await;
        let mut c = connection(&p, &a, "user-1", Utc::now() - Duration::minutes(5));
        c.deduplication_key = Some("mine".to_owned());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        let mut other = connection(&p, &a, "user-2", Utc::now());
        other.deduplication_key = Some("theirs".to_owned());
        s.store
            .insert_connection(&other, &event("created"), None)
            .await
            .expect("insert");

        let same = s
            .update_connection_settings(&p, &c.id, &ConnectionSettingsUpdate::default())
            .await
            .expect("no-op")
            .expect("found");
        assert_eq!(same.metadata, c.metadata);
        assert_eq!(same.deduplication_key.as_deref(), Some("mine"));

        let updated = s
            .update_connection_settings(
                &p,
                &c.id,
                &ConnectionSettingsUpdate {
                    metadata: Some(None),
                    is_onbehalf_token_supported: Some(true),
                    ..Default::default()
                },
            )
            .await
            .expect("update")
            .expect("found");
        assert!(updated.metadata.is_none());
        assert!(updated.is_onbehalf_token_supported);
        assert!(updated.is_local_recording_token_supported, "untouched");
        assert_eq!(
            updated.deduplication_key.as_deref(),
            Some("mine"),
            "untouched"
        );
        assert!(updated.updated_at > c.updated_at);

        let err = s
            .update_connection_settings(
                &p,
                &c.id,
                &ConnectionSettingsUpdate {
                    deduplication_key: Some(Some("theirs".to_owned())),
                    ..Default::default()
                },
            )
            .await
            .expect_err("taken");
        assert_eq!(conflict_name(err), "connections_app_deduplication_key");

        let cleared = s
            .update_connection_settings(
                &p,
                &c.id,
                &ConnectionSettingsUpdate {
                    metadata: Some(Some(serde_json::json!({ "a": "b" }))),
                    deduplication_key: Some(None),
                    is_local_recording_token_supported: Some(false),
                    ..Default::default()
                },
            )
            .await
            .expect("update")
            .expect("found");
        assert_eq!(cleared.metadata, Some(serde_json::json!({ "a": "b" })));
        assert!(cleared.deduplication_key.is_none());
        assert!(!cleared.is_local_recording_token_supported);
        assert!(cleared.is_onbehalf_token_supported, "kept from before");
        assert!(s
            .update_connection_settings("prj_other", &c.id, &ConnectionSettingsUpdate::default())
            .await
            .expect("other project")
            .is_none());
    }

    pub async fn deleted_connection_is_returned_as_it_was_with_its_meetings_and_events(
        s: TestStore,
    ) {
        let (p, a) = project_and_app(&s).await;
        let c = connection(&p, &a, "user-1", Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        s.insert_meeting(&p, &a, "85012345678", &c.id, Utc::now())
            .await;
        assert!(s
            .delete_connection("prj_other", &c.id, None)
            .await
            .expect("other project")
            .is_none());
        let gone = s
            .delete_connection(&p, &c.id, None)
            .await
            .expect("delete")
            .expect("was there");
        assert_eq!(gone.id, c.id);
        assert_eq!(gone.refresh_token, c.refresh_token, "so it can be revoked");
        assert!(s.get_connection(&p, &c.id).await.expect("get").is_none());
        assert_eq!(s.count_rows("zoom_meetings", None).await, 0);
        assert_eq!(s.count_rows("connection_events", None).await, 0);
        assert!(s
            .delete_connection(&p, &c.id, None)
            .await
            .expect("again")
            .is_none());
        assert_eq!(
            s.delete_app(&p, &a).await.expect("delete app"),
            DeleteAppOutcome::Deleted
        );
    }

    pub async fn only_one_of_many_concurrent_claims_wins_the_lease(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let c = connection(&p, &a, "user-1", Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = s.store.clone();
            let id = c.id.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .claim_connection_lease(&id, &format!("worker-{i}"), LEASE)
                    .await
                    .expect("claim")
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            if let Some(row) = t.await.expect("task") {
                winners.push(row);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one claim wins");
        let first = winners.remove(0);
        assert_eq!(first.fence, 1);
        let owner = first.lease_owner.clone().expect("owner");
        let until = first.lease_until.expect("until");
        let now = s.now().await.expect("now");
        assert!(
            until > now && until <= now + Duration::seconds(60),
            "{until} vs {now}"
        );
        let stored = s
            .connection_by_id(&c.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(stored.lease_owner.as_deref(), Some(owner.as_str()));
        assert!(s
            .claim_connection_lease(&c.id, "late", LEASE)
            .await
            .expect("claim")
            .is_none());

        assert!(s
            .release_connection_lease(&c.id, first.fence, None)
            .await
            .expect("release"));

        // A lease that runs out can be taken over, and its holder is fenced off.
        let expired = s
            .claim_connection_lease(&c.id, "slow", StdDuration::from_millis(300))
            .await
            .expect("claim")
            .expect("free after release");
        assert_eq!(expired.fence, 2);
        s.clock().advance(StdDuration::from_millis(500));
        let second = s
            .claim_connection_lease(&c.id, "after-expiry", LEASE)
            .await
            .expect("claim")
            .expect("an expired lease can be taken");
        assert_eq!(second.fence, 3);
        // The expired holder's write-back and release are refused.
        assert!(!s
            .store_refreshed_tokens(
                &c.id,
                expired.fence,
                &refreshed("slow"),
                Some(&event("token_refreshed"))
            )
            .await
            .expect("stale write"));
        assert!(!s
            .release_connection_lease(&c.id, expired.fence, None)
            .await
            .expect("stale release"));
        let unchanged = s
            .connection_by_id(&c.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(unchanged.refresh_token, c.refresh_token);
        assert_eq!(unchanged.lease_owner.as_deref(), Some("after-expiry"));
        assert_eq!(s.count_rows("connection_events", Some(&c.id)).await, 1);

        // The current holder writes back; the lease is free again.
        let tokens = refreshed("second");
        assert!(s
            .store_refreshed_tokens(
                &c.id,
                second.fence,
                &tokens,
                Some(&event("token_refreshed"))
            )
            .await
            .expect("write"));
        let after = s
            .connection_by_id(&c.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(after.refresh_token, Some(tokens.refresh_token.clone()));
        assert_eq!(after.access_token, Some(tokens.access_token.clone()));
        assert_eq!(
            after.access_token_expires_at,
            Some(tokens.access_token_expires_at)
        );
        assert_eq!(after.refresh_due_at, Some(tokens.refresh_due_at));
        assert_eq!(after.scopes, c.scopes, "None keeps the scopes");
        assert!(after.last_successful_token_refresh_at.is_some());
        assert!(after.lease_owner.is_none() && after.lease_until.is_none());
        assert_eq!(
            after.fence, second.fence,
            "a write-back does not move the fence"
        );
        assert_eq!(s.count_rows("connection_events", Some(&c.id)).await, 2);
        assert!(s
            .claim_connection_lease(&c.id, "next", LEASE)
            .await
            .expect("claim")
            .is_some());
        // A disconnected connection cannot be claimed.
        let gone = connection(&p, &a, "user-2", Utc::now());
        s.store
            .insert_connection(&gone, &event("created"), None)
            .await
            .expect("insert");
        s.disconnect_connection(
            &gone.id,
            None,
            &failure("invalid_grant"),
            &event("disconnected"),
            None,
        )
        .await
        .expect("disconnect");
        assert!(s
            .claim_connection_lease(&gone.id, "w", LEASE)
            .await
            .expect("claim")
            .is_none());
        assert!(s
            .claim_connection_lease("zoc_missing", "w", LEASE)
            .await
            .expect("claim")
            .is_none());
    }

    pub async fn released_lease_frees_the_row_and_can_push_the_retry_back(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let c = connection(&p, &a, "user-1", Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        let held = s
            .claim_connection_lease(&c.id, "w", LEASE)
            .await
            .expect("claim")
            .expect("claimed");
        let retry_at = micros(Utc::now() + Duration::minutes(2));
        assert!(s
            .release_connection_lease(&c.id, held.fence, Some(retry_at))
            .await
            .expect("release"));
        let row = s
            .connection_by_id(&c.id)
            .await
            .expect("get")
            .expect("found");
        assert!(row.lease_owner.is_none() && row.lease_until.is_none());
        assert_eq!(row.refresh_due_at, Some(retry_at));
        assert_eq!(row.refresh_token, c.refresh_token, "tokens untouched");
        let again = s
            .claim_connection_lease(&c.id, "w2", LEASE)
            .await
            .expect("claim")
            .expect("free again");
        assert!(s
            .release_connection_lease(&c.id, again.fence, None)
            .await
            .expect("release"));
        let row = s
            .connection_by_id(&c.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            row.refresh_due_at,
            Some(retry_at),
            "None keeps the due time"
        );
    }

    pub async fn concurrent_disconnects_write_exactly_one_event_and_outbox_row(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let c = connection(&p, &a, "user-1", Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        let held = s
            .claim_connection_lease(&c.id, "w", LEASE)
            .await
            .expect("claim")
            .expect("claimed");
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = s.store.clone();
            let id = c.id.clone();
            // Half carry the current fence, half none: both kinds may win, once.
            let fence = (i % 2 == 0).then_some(held.fence);
            tasks.push(tokio::spawn(async move {
                store
                    .disconnect_connection(
                        &id,
                        fence,
                        &failure("invalid_grant"),
                        &event("disconnected"),
                        Some(&state_change(&id, "disconnected")),
                    )
                    .await
                    .expect("disconnect")
            }));
        }
        let mut disconnected = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                DisconnectOutcome::Disconnected(row) => disconnected.push(*row),
                DisconnectOutcome::Unchanged => {}
                DisconnectOutcome::NotFound => panic!("the connection exists"),
            }
        }
        assert_eq!(disconnected.len(), 1, "exactly one caller disconnects");
        let row = &disconnected[0];
        assert_eq!(row.state, ConnectionState::Disconnected);
        assert!(row.refresh_token.is_none() && row.access_token.is_none());
        assert!(row.access_token_expires_at.is_none());
        assert!(row.lease_owner.is_none() && row.lease_until.is_none());
        assert_eq!(row.fence, held.fence + 1);
        let f = row.connection_failure_data.as_ref().expect("failure data");
        assert_eq!(f.code, "invalid_grant");
        assert_eq!(
            s.list_outbox_events(&p, 100).await.expect("outbox").len(),
            1
        );
        let events = s
            .list_connection_events(
                &p,
                &c.id,
                &PageRequest {
                    cursor: None,
                    limit: 100,
                },
            )
            .await
            .expect("events");
        let kinds: Vec<&str> = events.items.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["disconnected", "created"]);

        // The stored failure data is {error, code, timestamp} with a µs Z timestamp.
        let stored = s
            .connection_by_id(&c.id)
            .await
            .expect("get")
            .expect("found");
        let f = stored.connection_failure_data.expect("failure data");
        let json = serde_json::to_value(&f).expect("json");
        assert_eq!(json.as_object().map(|o| o.len()), Some(3));
        assert!(stored.refresh_token.is_none());

        // A stale fence, or a missing connection, changes nothing.
        let other = connection(&p, &a, "user-2", Utc::now());
        s.store
            .insert_connection(&other, &event("created"), None)
            .await
            .expect("insert");
        assert!(matches!(
            s.disconnect_connection(
                &other.id,
                Some(41),
                &failure("invalid_grant"),
                &event("disconnected"),
                None
            )
            .await
            .expect("stale"),
            DisconnectOutcome::Unchanged
        ));
        assert_eq!(
            s.connection_by_id(&other.id)
                .await
                .expect("get")
                .expect("found")
                .state,
            ConnectionState::Connected
        );
        assert!(matches!(
            s.disconnect_connection(
                "zoc_missing",
                None,
                &failure("invalid_grant"),
                &event("disconnected"),
                None
            )
            .await
            .expect("missing"),
            DisconnectOutcome::NotFound
        ));
        assert_eq!(
            s.list_outbox_events(&p, 100).await.expect("outbox").len(),
            1
        );
    }

    pub async fn failure_timestamp_is_stored_as_rfc3339_micros_z(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let c = connection(&p, &a, "user-1", Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        let at = chrono::DateTime::parse_from_rfc3339("2024-05-06T07:08:09.123456789Z")
            .expect("time")
            .with_timezone(&Utc);
        let f = FailureData {
            error: "gone".to_owned(),
            code: "app_deauthorized".to_owned(),
            timestamp: at,
        };
        s.disconnect_connection(&c.id, None, &f, &event("deauthorized"), None)
            .await
            .expect("disconnect");
        let stored = s
            .connection_by_id(&c.id)
            .await
            .expect("get")
            .expect("found");
        let got = stored.connection_failure_data.expect("failure data");
        assert_eq!(got.timestamp, micros(at), "truncated to microseconds");
        assert_eq!(got.code, "app_deauthorized");
        assert_eq!(
            got.timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "2024-05-06T07:08:09.123456Z"
        );
    }

    pub async fn two_claimers_take_every_due_connection_exactly_once(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let now = Utc::now();
        let mut due = Vec::new();
        for i in 0..100 {
            let mut c = connection(&p, &a, &format!("user-{i}"), now);
            c.refresh_due_at = Some(micros(now - Duration::seconds(100 - i)));
            s.store
                .insert_connection(&c, &event("created"), None)
                .await
                .expect("insert");
            due.push(c.id);
        }
        for i in 0..5 {
            // Not due yet.
            s.store
                .insert_connection(
                    &connection(&p, &a, &format!("later-{i}"), now),
                    &event("created"),
                    None,
                )
                .await
                .expect("insert");
        }
        let mut tasks = Vec::new();
        for w in 0..2 {
            let store = s.store.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_due_refreshes(
                            &format!("worker-{w}"),
                            7,
                            LEASE,
                            StdDuration::from_secs(600),
                        )
                        .await
                        .expect("claim");
                    if batch.is_empty() {
                        break;
                    }
                    for c in &batch {
                        assert_eq!(
                            c.lease_owner.as_deref(),
                            Some(format!("worker-{w}").as_str())
                        );
                    }
                    mine.extend(batch.into_iter().map(|c| c.id));
                }
                mine
            }));
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut per_worker = Vec::new();
        for t in tasks {
            let mine = t.await.expect("task");
            per_worker.push(mine.len());
            for id in mine {
                *counts.entry(id).or_default() += 1;
            }
        }
        assert_eq!(
            counts.len(),
            100,
            "every due connection claimed ({per_worker:?})"
        );
        assert!(counts.values().all(|&n| n == 1), "none twice");
        for id in &due {
            assert!(counts.contains_key(id));
        }
        // Oldest due first.
        let mut c = connection(&p, &a, "fresh-due", now);
        c.refresh_due_at = Some(micros(now - Duration::seconds(1)));
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        let mut old = connection(&p, &a, "old-due", now);
        old.refresh_due_at = Some(micros(now - Duration::days(1)));
        s.store
            .insert_connection(&old, &event("created"), None)
            .await
            .expect("insert");
        let first = s
            .claim_due_refreshes("w", 1, LEASE, StdDuration::from_secs(600))
            .await
            .expect("claim");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id, old.id);
    }

    pub async fn tokens_expiring_before_an_indexed_meeting_are_due(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let now = Utc::now();
        let ahead = StdDuration::from_secs(3600);
        // Token expires in 10 min; the meeting starts in 20 min: refresh now.
        let mut needy = connection(&p, &a, "needy", now);
        needy.access_token_expires_at = Some(micros(now + Duration::minutes(10)));
        s.store
            .insert_connection(&needy, &event("created"), None)
            .await
            .expect("insert");
        s.insert_meeting(
            &p,
            &a,
            "85000000001",
            &needy.id,
            now + Duration::minutes(20),
        )
        .await;
        // Token outlives the meeting's start by more than 5 minutes: not due.
        let mut covered = connection(&p, &a, "covered", now);
        covered.access_token_expires_at = Some(micros(now + Duration::minutes(50)));
        s.store
            .insert_connection(&covered, &event("created"), None)
            .await
            .expect("insert");
        s.insert_meeting(
            &p,
            &a,
            "85000000002",
            &covered.id,
            now + Duration::minutes(20),
        )
        .await;
        // The meeting is beyond the look-ahead: not due.
        let mut far = connection(&p, &a, "far", now);
        far.access_token_expires_at = Some(micros(now + Duration::minutes(10)));
        s.store
            .insert_connection(&far, &event("created"), None)
            .await
            .expect("insert");
        s.insert_meeting(&p, &a, "85000000003", &far.id, now + Duration::hours(3))
            .await;
        // The meeting is in the past: not due.
        let mut past = connection(&p, &a, "past", now);
        past.access_token_expires_at = Some(micros(now + Duration::minutes(10)));
        s.store
            .insert_connection(&past, &event("created"), None)
            .await
            .expect("insert");
        s.insert_meeting(&p, &a, "85000000004", &past.id, now - Duration::minutes(20))
            .await;

        let claimed = s
            .claim_due_refreshes("w", 10, LEASE, ahead)
            .await
            .expect("claim");
        let ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [needy.id.as_str()]);
        assert!(
            s.claim_due_refreshes("w", 10, LEASE, ahead)
                .await
                .expect("claim")
                .is_empty(),
            "leased rows are skipped"
        );
    }

    pub async fn connection_events_list_newest_first_with_cursors(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let c = connection(&p, &a, "user-1", Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        for i in 0..5 {
            s.insert_connection_event(&c.id, &event(&format!("sync_completed_{i}")))
                .await
                .expect("event");
        }
        let err = s
            .insert_connection_event("zoc_missing", &event("x"))
            .await
            .expect_err("missing connection");
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
        let all = s
            .list_connection_events(
                &p,
                &c.id,
                &PageRequest {
                    cursor: None,
                    limit: 100,
                },
            )
            .await
            .expect("events");
        let kinds: Vec<&str> = all.items.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "sync_completed_4",
                "sync_completed_3",
                "sync_completed_2",
                "sync_completed_1",
                "sync_completed_0",
                "created"
            ]
        );
        assert_eq!(all.items[0].connection_id, c.id);
        assert_eq!(all.items[0].message, "sync_completed_4 happened");
        assert_eq!(
            all.items[0].data,
            Some(serde_json::json!({ "kind": "sync_completed_4" }))
        );
        let cursor = |i: usize, direction| Cursor {
            created_at: all.items[i].created_at,
            id: all.items[i].id.to_string(),
            direction,
        };
        let page = s
            .list_connection_events(
                &p,
                &c.id,
                &PageRequest {
                    cursor: Some(cursor(1, Direction::Older)),
                    limit: 2,
                },
            )
            .await
            .expect("next page");
        assert_eq!(
            page.items.iter().map(|e| e.id).collect::<Vec<_>>(),
            [all.items[2].id, all.items[3].id]
        );
        assert!(page.has_more);
        let page = s
            .list_connection_events(
                &p,
                &c.id,
                &PageRequest {
                    cursor: Some(cursor(4, Direction::Newer)),
                    limit: 2,
                },
            )
            .await
            .expect("previous page");
        assert_eq!(
            page.items.iter().map(|e| e.id).collect::<Vec<_>>(),
            [all.items[2].id, all.items[3].id]
        );
        assert!(page.has_more);
        assert!(s
            .list_connection_events(
                "prj_other",
                &c.id,
                &PageRequest {
                    cursor: None,
                    limit: 10
                }
            )
            .await
            .expect("other project")
            .items
            .is_empty());
    }

    /// Builds the outbox payload from the row as the write left it.
    struct MetadataAsWritten;

    impl keeper::storage::OutboxSource for MetadataAsWritten {
        fn event_for(&self, written: &ConnectionRow) -> keeper::storage::NewOutboxEvent {
            keeper::storage::NewOutboxEvent {
                trigger: "zoom_oauth_connection.state_change".to_owned(),
                payload: serde_json::json!({"metadata": written.metadata, "state": written.state.as_str()}),
            }
        }
    }

    /// Issue 10: changes that end in a revoke claim the lease whatever the state; a
    /// held lease is renewed only by its fence; a grant replacement and a delete can
    /// be fenced on the row they decided on; `keep_state` keeps a disconnected row
    /// disconnected; the outbox event is built from the row as written.
    pub async fn fenced_grant_writes_renewals_and_deletes(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let c = connection(&p, &a, "user-1", Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        let claimed = s
            .claim_connection_lease_any_state(&c.id, "a", LEASE)
            .await
            .expect("claim")
            .expect("free");
        assert!(s
            .claim_connection_lease_any_state(&c.id, "b", LEASE)
            .await
            .expect("claim")
            .is_none());
        assert!(s
            .renew_connection_lease(&c.id, claimed.fence, LEASE)
            .await
            .expect("renew"));
        assert!(!s
            .renew_connection_lease(&c.id, claimed.fence - 1, LEASE)
            .await
            .expect("renew"));
        assert!(s
            .release_connection_lease(&c.id, claimed.fence, None)
            .await
            .expect("release"));
        // Released: nothing left to renew.
        assert!(!s
            .renew_connection_lease(&c.id, claimed.fence, LEASE)
            .await
            .expect("renew"));

        s.disconnect_connection(
            &c.id,
            None,
            &failure("invalid_grant"),
            &event("disconnected"),
            None,
        )
        .await
        .expect("disconnect");
        assert!(s
            .claim_connection_lease(&c.id, "a", LEASE)
            .await
            .expect("claim")
            .is_none());
        let claimed = s
            .claim_connection_lease_any_state(&c.id, "a", LEASE)
            .await
            .expect("claim")
            .expect("a disconnected row can be claimed for a change");

        // Metadata changed by a PATCH after the decision: the event shows it.
        s.update_connection_settings(
            &p,
            &c.id,
            &ConnectionSettingsUpdate {
                metadata: Some(Some(serde_json::json!({"team": "blue"}))),
                ..Default::default()
            },
        )
        .await
        .expect("patch")
        .expect("found");
        let mut grant = GrantReplacement {
            user_id: "user-1".to_owned(),
            account_id: "acct_1".to_owned(),
            email: None,
            pmi: None,
            personal_meeting_url: None,
            metadata: Some(serde_json::json!({"team": "blue"})),
            deduplication_key: None,
            is_local_recording_token_supported: true,
            is_onbehalf_token_supported: false,
            scopes: vec![],
            refresh_token: Sealed(b"newest refresh".to_vec()),
            access_token: Sealed(b"newest access".to_vec()),
            access_token_expires_at: micros(Utc::now() + Duration::hours(1)),
            refresh_due_at: micros(Utc::now() + Duration::days(30)),
            next_sync_at: None,
            clear_meetings: false,
            keep_state: true,
            expected_fence: Some(claimed.fence - 1),
        };
        assert!(s
            .replace_connection_grant(&p, &c.id, &grant, &event("reauthorization_failed"), None)
            .await
            .expect("stale fence")
            .is_none());
        grant.expected_fence = Some(claimed.fence);
        let kept = s
            .replace_connection_grant(&p, &c.id, &grant, &event("reauthorization_failed"), None)
            .await
            .expect("replace")
            .expect("fence current");
        assert_eq!(kept.state, ConnectionState::Disconnected, "keep_state");
        assert!(kept.connection_failure_data.is_some());
        assert_eq!(kept.refresh_token, Some(Sealed(b"newest refresh".to_vec())));
        assert_eq!(kept.fence, claimed.fence + 1);
        assert!(kept.lease_owner.is_none());

        grant.keep_state = false;
        grant.expected_fence = Some(kept.fence);
        grant.metadata = Some(serde_json::json!({"team": "green"}));
        let before = s.list_outbox_events(&p, 10).await.expect("outbox").len();
        let connected = s
            .replace_connection_grant(
                &p,
                &c.id,
                &grant,
                &event("reconnected"),
                Some(&MetadataAsWritten),
            )
            .await
            .expect("replace")
            .expect("fence current");
        assert_eq!(connected.state, ConnectionState::Connected);
        assert!(connected.connection_failure_data.is_none());
        let outbox = s.list_outbox_events(&p, 10).await.expect("outbox");
        assert_eq!(outbox.len(), before + 1);
        assert!(
            outbox
                .iter()
                .any(|o| o.payload["metadata"]["team"] == "green"
                    && o.payload["state"] == "connected"),
            "{outbox:?}"
        );

        // A delete fenced on a stale claim deletes nothing.
        assert!(s
            .delete_connection(&p, &c.id, Some(connected.fence - 1))
            .await
            .expect("delete")
            .is_none());
        assert!(s.connection_by_id(&c.id).await.expect("get").is_some());
        let gone = s
            .delete_connection(&p, &c.id, Some(connected.fence))
            .await
            .expect("delete")
            .expect("deleted");
        assert_eq!(gone.refresh_token, Some(Sealed(b"newest refresh".to_vec())));
    }
}

mod connection_tests {
    use super::connections::*;

    testkit::on_both_databases!(
        connection_round_trips_and_conflicts_on_user_and_deduplication_key,
        connections_filter_and_paginate_in_both_directions,
        grant_replacement_keeps_the_id_bumps_the_fence_and_writes_event_and_outbox,
        settings_update_changes_only_what_is_asked_and_conflicts_on_a_taken_key,
        deleted_connection_is_returned_as_it_was_with_its_meetings_and_events,
        only_one_of_many_concurrent_claims_wins_the_lease,
        released_lease_frees_the_row_and_can_push_the_retry_back,
        concurrent_disconnects_write_exactly_one_event_and_outbox_row,
        failure_timestamp_is_stored_as_rfc3339_micros_z,
        two_claimers_take_every_due_connection_exactly_once,
        tokens_expiring_before_an_indexed_meeting_are_due,
        connection_events_list_newest_first_with_cursors,
        fenced_grant_writes_renewals_and_deletes,
    );
}

/// The meeting → host index, webhook receipts and app webhook timestamps (issue 5).
mod meeting_index {
    use std::collections::HashSet;
    use std::sync::Arc;

    use chrono::{DateTime, Duration, Utc};
    use keeper::storage::{
        meeting_cursor_id, ConnectionRow, ConnectionState, Cursor, Direction, FailureData,
        MeetingFilter, MeetingIndexChange, MeetingRow, MeetingSource, PageRequest, ReceiptOutcome,
        StoreError, WebhookVerification,
    };

    use testkit::store::{app, connection, event, micros, project, TestStore};

    /// A project, one app and `users.len()` connections; returns (project, app, connections).
    async fn setup(
        s: &TestStore,
        name: &str,
        users: &[&str],
    ) -> (String, String, Vec<ConnectionRow>) {
        let p = project(name);
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "client", Utc::now());
        s.insert_app(&a).await.expect("app");
        let mut connections = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let c = connection(&p.id, &a.id, user, Utc::now() + Duration::seconds(i as i64));
            s.store
                .insert_connection(&c, &event("created"), None)
                .await
                .expect("connection");
            connections.push(c);
        }
        (p.id, a.id, connections)
    }

    fn meeting(
        c: &ConnectionRow,
        id: &str,
        source: MeetingSource,
        synced_at: DateTime<Utc>,
    ) -> MeetingRow {
        MeetingRow {
            project_id: c.project_id.clone(),
            app_id: c.app_id.clone(),
            meeting_id: id.to_owned(),
            connection_id: c.id.clone(),
            source,
            topic: Some(format!("meeting {id}")),
            start_time: Some(micros(Utc::now() + Duration::hours(1))),
            synced_at: micros(synced_at),
            host_user_id: None,
        }
    }

    async fn hosts(s: &TestStore, p: &str, app: Option<&str>, id: &str) -> Vec<MeetingRow> {
        s.meeting_hosts(p, app, id).await.expect("hosts")
    }

    pub async fn upsert_repoints_a_meeting_and_delete_drops_only_that_apps_row(s: TestStore) {
        let (p, a, cs) = setup(&s, "acme", &["host-1", "host-2"]).await;
        let b = app(&p, "other-client", Utc::now());
        s.insert_app(&b).await.expect("second app");
        let cb = connection(&p, &b.id, "host-b", Utc::now());
        s.store
            .insert_connection(&cb, &event("created"), None)
            .await
            .expect("connection of b");

        let m = meeting(&cs[0], "85746065432", MeetingSource::Webhook, Utc::now());
        s.apply_meeting_change(&MeetingIndexChange::Upsert(m.clone()))
            .await
            .expect("index");
        assert_eq!(
            hosts(&s, &p, Some(&a), "85746065432").await,
            vec![m.clone()]
        );
        let mb = meeting(&cb, "85746065432", MeetingSource::Sync, Utc::now());
        s.apply_meeting_change(&MeetingIndexChange::Upsert(mb.clone()))
            .await
            .expect("same meeting in app b");
        assert_eq!(hosts(&s, &p, None, "85746065432").await.len(), 2);

        // A later announcement of the same meeting re-points it; still one row per app.
        let moved = meeting(
            &cs[1],
            "85746065432",
            MeetingSource::Webhook,
            Utc::now() + Duration::seconds(1),
        );
        s.apply_meeting_change(&MeetingIndexChange::Upsert(moved.clone()))
            .await
            .expect("re-point");
        assert_eq!(
            hosts(&s, &p, Some(&a), "85746065432").await,
            vec![moved.clone()]
        );
        assert_eq!(s.count_rows("zoom_meetings", None).await, 2);

        s.apply_meeting_change(&MeetingIndexChange::Delete {
            app_id: a.clone(),
            meeting_id: "85746065432".to_owned(),
        })
        .await
        .expect("delete");
        assert_eq!(
            hosts(&s, &p, None, "85746065432").await,
            vec![mb],
            "app b's row stays"
        );
        s.apply_meeting_change(&MeetingIndexChange::Delete {
            app_id: a.clone(),
            meeting_id: "85746065432".to_owned(),
        })
        .await
        .expect("deleting again changes nothing");

        // Another project sees nothing; a vanished connection is NotFound.
        assert!(hosts(&s, "prj_other", None, "85746065432").await.is_empty());
        let mut ghost = meeting(&cs[0], "111111111", MeetingSource::Webhook, Utc::now());
        ghost.connection_id = "zoc_doesnotexist0000".to_owned();
        let err = s
            .apply_meeting_change(&MeetingIndexChange::Upsert(ghost))
            .await
            .expect_err("no such connection");
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
    }

    pub async fn pmi_rows_replace_each_other_and_outlive_webhook_rows(s: TestStore) {
        let (p, a, cs) = setup(&s, "acme", &["host-1"]).await;
        let c = &cs[0];
        let pmi = |id: &str| MeetingIndexChange::ReplacePmi {
            row: MeetingRow {
                topic: None,
                start_time: None,
                ..meeting(c, id, MeetingSource::Pmi, Utc::now())
            },
            personal_meeting_url: None,
        };
        s.apply_meeting_change(&pmi("3542471135"))
            .await
            .expect("first pmi");
        s.apply_meeting_change(&MeetingIndexChange::ReplacePmi {
            row: MeetingRow {
                topic: None,
                start_time: None,
                ..meeting(c, "3542471136", MeetingSource::Pmi, Utc::now())
            },
            personal_meeting_url: Some("https://zoom.us/j/3542471136".to_owned()),
        })
        .await
        .expect("new pmi");
        assert!(
            hosts(&s, &p, Some(&a), "3542471135").await.is_empty(),
            "old PMI dropped"
        );
        let rows = hosts(&s, &p, Some(&a), "3542471136").await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source, MeetingSource::Pmi);
        let got = s
            .connection_by_id(&c.id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(got.pmi.as_deref(), Some("3542471136"));
        assert_eq!(
            got.personal_meeting_url.as_deref(),
            Some("https://zoom.us/j/3542471136")
        );

        s.apply_meeting_change(&pmi("3542471137"))
            .await
            .expect("third pmi");
        let got = s
            .connection_by_id(&c.id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(got.pmi.as_deref(), Some("3542471137"));
        assert_eq!(
            got.personal_meeting_url.as_deref(),
            Some("https://zoom.us/j/3542471136"),
            "kept when the change does not name one"
        );

        // A meeting scheduled with the PMI arrives by webhook and is deleted: the
        // personal room stays indexed.
        s.apply_meeting_change(&MeetingIndexChange::Upsert(meeting(
            c,
            "3542471137",
            MeetingSource::Webhook,
            Utc::now(),
        )))
        .await
        .expect("webhook upsert");
        s.apply_meeting_change(&MeetingIndexChange::Delete {
            app_id: a.clone(),
            meeting_id: "3542471137".to_owned(),
        })
        .await
        .expect("delete");
        let rows = hosts(&s, &p, Some(&a), "3542471137").await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source, MeetingSource::Pmi);
        assert_eq!(s.count_rows("zoom_meetings", Some(&c.id)).await, 1);

        let mut gone = c.clone();
        gone.id = "zoc_doesnotexist0000".to_owned();
        let err = s
            .apply_meeting_change(&MeetingIndexChange::ReplacePmi {
                row: meeting(&gone, "3542471138", MeetingSource::Pmi, Utc::now()),
                personal_meeting_url: None,
            })
            .await
            .expect_err("no such connection");
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
        assert!(hosts(&s, &p, None, "3542471138").await.is_empty());
    }

    pub async fn webhook_receipt_applies_its_change_once_and_never_without_it(s: TestStore) {
        let (p, a, cs) = setup(&s, "acme", &["host-1", "host-2"]).await;
        let key = "meeting.created:1626230691572:85746065432";
        assert!(!s.webhook_receipt_exists(&a, key).await.expect("exists?"));
        let first = meeting(&cs[0], "85746065432", MeetingSource::Webhook, Utc::now());
        let outcome = s
            .record_webhook_receipt_and_apply(
                &a,
                key,
                Utc::now(),
                &MeetingIndexChange::Upsert(first.clone()),
            )
            .await
            .expect("first delivery");
        assert_eq!(outcome, ReceiptOutcome::Applied);
        let other = meeting(&cs[1], "85746065432", MeetingSource::Webhook, Utc::now());
        let outcome = s
            .record_webhook_receipt_and_apply(
                &a,
                key,
                Utc::now(),
                &MeetingIndexChange::Upsert(other),
            )
            .await
            .expect("redelivery");
        assert_eq!(outcome, ReceiptOutcome::Duplicate);
        assert_eq!(hosts(&s, &p, Some(&a), "85746065432").await, vec![first]);
        assert!(s.webhook_receipt_exists(&a, key).await.expect("exists?"));

        // A change that fails leaves no receipt, so the redelivery can still apply.
        let key2 = "meeting.created:2:111111111";
        let mut ghost = meeting(&cs[0], "111111111", MeetingSource::Webhook, Utc::now());
        ghost.connection_id = "zoc_doesnotexist0000".to_owned();
        let err = s
            .record_webhook_receipt_and_apply(
                &a,
                key2,
                Utc::now(),
                &MeetingIndexChange::Upsert(ghost),
            )
            .await
            .expect_err("vanished connection");
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
        assert!(!s.webhook_receipt_exists(&a, key2).await.expect("exists?"));
        let real = meeting(&cs[0], "111111111", MeetingSource::Webhook, Utc::now());
        assert_eq!(
            s.record_webhook_receipt_and_apply(
                &a,
                key2,
                Utc::now(),
                &MeetingIndexChange::Upsert(real)
            )
            .await
            .expect("retry"),
            ReceiptOutcome::Applied
        );
        // Receipts are per app; an unknown app is NotFound.
        let err = s
            .record_webhook_receipt_and_apply(
                "zoa_doesnotexist0000",
                key,
                Utc::now(),
                &MeetingIndexChange::Nothing,
            )
            .await
            .expect_err("no such app");
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
    }

    /// SQLite's receipt writer does not checkpoint the WAL itself; a thread of its
    /// own does. What the writer commits reaches the database file (read here while
    /// ignoring the WAL) with no other write to trigger a checkpoint.
    pub async fn sqlite_receipts_reach_the_database_file_without_other_writes() {
        let s = testkit::store::sqlite().await;
        let (_, a, cs) = setup(&s, "acme", &["host-1"]).await;
        let path = s.sqlite_path.clone().expect("a SQLite file");
        for i in 0..50u64 {
            let row = meeting(
                &cs[0],
                &(800_000_000 + i).to_string(),
                MeetingSource::Webhook,
                Utc::now(),
            );
            s.record_webhook_receipt_and_apply(
                &a,
                &format!("wal:{i}"),
                Utc::now(),
                &MeetingIndexChange::Upsert(row),
            )
            .await
            .expect("recorded");
        }
        // `immutable`: the main file alone, as if the WAL were not there.
        let in_the_file = || {
            let url = format!("file:{}?immutable=1", path.display());
            let conn = rusqlite::Connection::open_with_flags(
                url,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )
            .expect("open the file");
            conn.query_row(
                "SELECT count(*) FROM zoom_webhook_receipts WHERE dedupe_key LIKE 'wal:%'",
                [],
                |r| r.get::<_, i64>(0),
            )
            // Not even the schema in the file yet.
            .unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while in_the_file() < 50 {
            assert!(
                std::time::Instant::now() < deadline,
                "the receipts stayed in the WAL: {} of 50 in the file",
                in_the_file()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn upsert_if_host_writes_only_while_the_host_is_unchanged(s: TestStore) {
        let (p, a, cs) = setup(&s, "acme", &["host-1", "host-2"]).await;
        let row = meeting(&cs[0], "85746065433", MeetingSource::Webhook, Utc::now());
        let guarded = |user: &str, state| MeetingIndexChange::UpsertIfHost {
            row: row.clone(),
            user_id: user.to_owned(),
            state,
        };
        // The connection no longer is that user's, or no longer in that state.
        let changed = [
            guarded("host-2", ConnectionState::Connected),
            guarded("host-1", ConnectionState::Disconnected),
        ];
        for (i, change) in changed.iter().enumerate() {
            let key = format!("changed:{i}");
            let err = s
                .record_webhook_receipt_and_apply(&a, &key, Utc::now(), change)
                .await
                .expect_err("the host changed");
            assert!(matches!(err, StoreError::NotFound), "{err:?}");
            assert!(
                !s.webhook_receipt_exists(&a, &key).await.expect("exists?"),
                "no receipt, so the event can still be applied"
            );
            let err = s
                .apply_meeting_change(change)
                .await
                .expect_err("the host changed, without a receipt");
            assert!(matches!(err, StoreError::NotFound), "{err:?}");
        }
        assert!(hosts(&s, &p, Some(&a), "85746065433").await.is_empty());

        let outcome = s
            .record_webhook_receipt_and_apply(
                &a,
                "unchanged",
                Utc::now(),
                &guarded("host-1", ConnectionState::Connected),
            )
            .await
            .expect("the host is as chosen");
        assert_eq!(outcome, ReceiptOutcome::Applied);
        assert_eq!(hosts(&s, &p, Some(&a), "85746065433").await, vec![row]);
    }

    /// Receipts arriving together are written together; one event whose connection
    /// vanished must fail alone, and every other event still apply.
    pub async fn one_vanished_connection_in_a_burst_fails_only_its_own_event(s: TestStore) {
        let (p, a, cs) = setup(&s, "acme", &["host-1", "host-2"]).await;
        const GHOST: u64 = 17;
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let mut row = meeting(
                &cs[(i % 2) as usize],
                &(700_000_000 + i).to_string(),
                MeetingSource::Webhook,
                Utc::now(),
            );
            if i == GHOST {
                row.connection_id = "zoc_doesnotexist0000".to_owned();
            }
            let (store, a) = (Arc::clone(&s.store), a.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .record_webhook_receipt_and_apply(
                        &a,
                        &format!("burst:{i}"),
                        Utc::now(),
                        &MeetingIndexChange::Upsert(row),
                    )
                    .await
            }));
        }
        for (i, task) in (0u64..).zip(tasks) {
            let outcome = task.await.expect("task");
            if i == GHOST {
                assert!(matches!(outcome, Err(StoreError::NotFound)), "{outcome:?}");
            } else {
                assert_eq!(
                    outcome.expect("recorded"),
                    ReceiptOutcome::Applied,
                    "event {i}"
                );
            }
        }
        assert!(!s
            .webhook_receipt_exists(&a, "burst:17")
            .await
            .expect("exists?"));
        for i in (0..64u64).filter(|i| *i != GHOST) {
            let rows = hosts(&s, &p, Some(&a), &(700_000_000 + i).to_string()).await;
            assert_eq!(rows.len(), 1, "event {i}");
        }
    }

    pub async fn concurrent_redeliveries_apply_exactly_once(s: TestStore) {
        let (p, a, cs) = setup(&s, "acme", &["host-1", "host-2", "host-3", "host-4"]).await;
        let store = s.store.clone();
        let mut tasks = Vec::new();
        for i in 0..12 {
            let store = Arc::clone(&store);
            let row = meeting(
                &cs[i % cs.len()],
                "85746065432",
                MeetingSource::Webhook,
                Utc::now(),
            );
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .record_webhook_receipt_and_apply(
                        &a,
                        "k",
                        Utc::now(),
                        &MeetingIndexChange::Upsert(row.clone()),
                    )
                    .await
                    .map(|o| (o, row.connection_id))
            }));
        }
        let mut applied = Vec::new();
        for t in tasks {
            let (outcome, connection) = t.await.expect("task").expect("recorded");
            if outcome == ReceiptOutcome::Applied {
                applied.push(connection);
            }
        }
        assert_eq!(applied.len(), 1, "exactly one delivery applies");
        let rows = hosts(&s, &p, Some(&a), "85746065432").await;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].connection_id, applied[0],
            "and it is the one whose change stands"
        );
    }

    pub async fn meetings_filter_and_paginate_newest_synced_first(s: TestStore) {
        let (p, a, cs) = setup(&s, "acme", &["host-1", "host-2"]).await;
        let base = Utc::now() - Duration::hours(1);
        let mut expected = Vec::new();
        for i in 0..7i64 {
            // Two rows share a synced_at to exercise the tie-break.
            let at = base + Duration::seconds(i.min(5));
            let row = meeting(
                &cs[(i % 2) as usize],
                &format!("{}", 100_000_000 + i),
                MeetingSource::Webhook,
                at,
            );
            s.apply_meeting_change(&MeetingIndexChange::Upsert(row.clone()))
                .await
                .expect("index");
            expected.push(row);
        }
        expected.sort_by(|x, y| {
            (y.synced_at, &y.app_id, &y.meeting_id).cmp(&(x.synced_at, &x.app_id, &x.meeting_id))
        });
        let all = MeetingFilter::default();
        let cursor_of = |m: &MeetingRow, direction| Cursor {
            created_at: m.synced_at,
            id: meeting_cursor_id(&m.app_id, &m.meeting_id),
            direction,
        };
        let mut seen = Vec::new();
        let mut page = s
            .list_meetings(
                &p,
                &all,
                &PageRequest {
                    cursor: None,
                    limit: 3,
                },
            )
            .await
            .expect("first page");
        loop {
            seen.extend(page.items.clone());
            if !page.has_more {
                break;
            }
            let last = page.items.last().expect("non-empty page");
            page = s
                .list_meetings(
                    &p,
                    &all,
                    &PageRequest {
                        cursor: Some(cursor_of(last, Direction::Older)),
                        limit: 3,
                    },
                )
                .await
                .expect("next page");
        }
        assert_eq!(seen, expected, "every row once, newest first");
        // Back from the last row: the rows before it, still newest first.
        let back = s
            .list_meetings(
                &p,
                &all,
                &PageRequest {
                    cursor: Some(cursor_of(&expected[6], Direction::Newer)),
                    limit: 3,
                },
            )
            .await
            .expect("previous page");
        assert_eq!(back.items, expected[3..6].to_vec());
        assert!(back.has_more);

        let by_connection = s
            .list_meetings(
                &p,
                &MeetingFilter {
                    meeting_id: None,
                    connection_id: Some(cs[1].id.clone()),
                    ..MeetingFilter::default()
                },
                &PageRequest {
                    cursor: None,
                    limit: 100,
                },
            )
            .await
            .expect("by connection");
        assert_eq!(by_connection.items.len(), 3);
        assert!(by_connection
            .items
            .iter()
            .all(|m| m.connection_id == cs[1].id));
        let by_meeting = s
            .list_meetings(
                &p,
                &MeetingFilter {
                    meeting_id: Some("100000004".into()),
                    connection_id: None,
                    ..MeetingFilter::default()
                },
                &PageRequest {
                    cursor: None,
                    limit: 100,
                },
            )
            .await
            .expect("by meeting");
        assert_eq!(by_meeting.items.len(), 1);
        assert_eq!(by_meeting.items[0].meeting_id, "100000004");
        let elsewhere = s
            .list_meetings(
                "prj_someoneelse00000",
                &all,
                &PageRequest {
                    cursor: None,
                    limit: 100,
                },
            )
            .await
            .expect("other project");
        assert!(elsewhere.items.is_empty() && !elsewhere.has_more);
        assert_eq!(a, expected[0].app_id);
    }

    pub async fn app_webhook_timestamps_only_move_forward(s: TestStore) {
        let (_, a, _) = setup(&s, "acme", &[]).await;
        let t1 = micros(Utc::now());
        s.record_app_webhook_received(&a, WebhookVerification::Verified, t1)
            .await
            .expect("record");
        s.record_app_webhook_received(
            &a,
            WebhookVerification::Verified,
            t1 - Duration::seconds(10),
        )
        .await
        .expect("older record");
        let got = s.app_by_id(&a).await.expect("read").expect("exists");
        assert_eq!(got.last_verified_webhook_received_at, Some(t1));
        assert_eq!(got.last_unverified_webhook_received_at, None);
        let t2 = t1 + Duration::seconds(1);
        s.record_app_webhook_received(&a, WebhookVerification::Unverified, t2)
            .await
            .expect("unverified");
        let got = s.app_by_id(&a).await.expect("read").expect("exists");
        assert_eq!(got.last_unverified_webhook_received_at, Some(t2));
        assert_eq!(got.last_verified_webhook_received_at, Some(t1));
        assert!(s
            .app_by_id("zoa_doesnotexist0000")
            .await
            .expect("read")
            .is_none());
        // Unknown apps are not an error (the write is bookkeeping).
        s.record_app_webhook_received("zoa_doesnotexist0000", WebhookVerification::Verified, t2)
            .await
            .expect("no-op");
    }

    /// Issue 11: `webhook_events_stale_since` is set by the first flag only, read
    /// back on the app, and cleared once.
    pub async fn an_apps_stale_webhooks_flag_is_set_once_and_cleared(s: TestStore) {
        let (_, a, _) = setup(&s, "acme", &[]).await;
        let t1 = micros(Utc::now());
        assert!(s.flag_app_webhook_events_stale(&a, t1).await.expect("flag"));
        assert!(!s
            .flag_app_webhook_events_stale(&a, t1 + Duration::seconds(5))
            .await
            .expect("flag again"));
        let got = s.app_by_id(&a).await.expect("read").expect("exists");
        assert_eq!(got.webhook_events_stale_since, Some(t1));
        assert!(s.clear_app_webhook_events_stale(&a).await.expect("clear"));
        assert!(!s
            .clear_app_webhook_events_stale(&a)
            .await
            .expect("clear again"));
        let got = s.app_by_id(&a).await.expect("read").expect("exists");
        assert_eq!(got.webhook_events_stale_since, None);
        assert!(!s
            .flag_app_webhook_events_stale("zoa_doesnotexist0000", t1)
            .await
            .expect("no-op"));
    }

    pub async fn connection_in_account_is_the_oldest_connected_one(s: TestStore) {
        let (p, a, mut cs) = setup(&s, "acme", &[]).await;
        for (i, (user, account)) in [
            ("admin", "acct_1"),
            ("member", "acct_1"),
            ("stranger", "acct_2"),
        ]
        .iter()
        .enumerate()
        {
            let mut c = connection(&p, &a, user, Utc::now() + Duration::seconds(i as i64));
            c.account_id = (*account).to_owned();
            s.store
                .insert_connection(&c, &event("created"), None)
                .await
                .expect("connection");
            cs.push(c);
        }
        let got = s
            .connection_in_account(&a, "acct_1")
            .await
            .expect("read")
            .expect("found");
        assert_eq!(got.id, cs[0].id, "the oldest");
        s.disconnect_connection(
            &cs[0].id,
            None,
            &FailureData {
                error: "gone".into(),
                code: "app_deauthorized".into(),
                timestamp: Utc::now(),
            },
            &event("deauthorized"),
            None,
        )
        .await
        .expect("disconnect");
        let got = s
            .connection_in_account(&a, "acct_1")
            .await
            .expect("read")
            .expect("found");
        assert_eq!(got.id, cs[1].id, "a disconnected one is skipped");
        assert!(s
            .connection_in_account(&a, "acct_3")
            .await
            .expect("read")
            .is_none());
        assert!(s
            .connection_in_account("zoa_doesnotexist0000", "acct_1")
            .await
            .expect("read")
            .is_none());
    }

    pub async fn housekeeping_drops_old_receipts_and_past_non_pmi_meetings(s: TestStore) {
        let (p, a, cs) = setup(&s, "acme", &["host-1"]).await;
        let now = Utc::now();
        for (i, age_days) in [3, 3, 3, 0].iter().enumerate() {
            s.record_webhook_receipt_and_apply(
                &a,
                &format!("k{i}"),
                now - Duration::days(*age_days),
                &MeetingIndexChange::Nothing,
            )
            .await
            .expect("receipt");
        }
        let cutoff = now - Duration::days(1);
        assert_eq!(
            s.delete_webhook_receipts_before(cutoff, 2)
                .await
                .expect("batch 1"),
            2
        );
        assert_eq!(
            s.delete_webhook_receipts_before(cutoff, 2)
                .await
                .expect("batch 2"),
            1
        );
        assert_eq!(
            s.delete_webhook_receipts_before(cutoff, 2)
                .await
                .expect("batch 3"),
            0
        );
        assert!(s.webhook_receipt_exists(&a, "k3").await.expect("exists?"));

        let c = &cs[0];
        let at = |id: &str, source, start: Option<DateTime<Utc>>| MeetingRow {
            start_time: start.map(micros),
            ..meeting(c, id, source, now)
        };
        let rows = [
            at(
                "100000001",
                MeetingSource::Webhook,
                Some(now - Duration::days(40)),
            ),
            at(
                "100000002",
                MeetingSource::Sync,
                Some(now - Duration::days(40)),
            ),
            at(
                "100000003",
                MeetingSource::Webhook,
                Some(now + Duration::days(1)),
            ),
            at("100000004", MeetingSource::Webhook, None),
            at(
                "100000005",
                MeetingSource::Pmi,
                Some(now - Duration::days(40)),
            ),
        ];
        for r in &rows {
            s.apply_meeting_change(&MeetingIndexChange::Upsert(r.clone()))
                .await
                .expect("index");
        }
        let deleted = s
            .delete_meetings_started_before(now - Duration::days(30), 100)
            .await
            .expect("expire");
        assert_eq!(deleted, 2);
        let left: HashSet<String> = s
            .list_meetings(
                &p,
                &MeetingFilter::default(),
                &PageRequest {
                    cursor: None,
                    limit: 100,
                },
            )
            .await
            .expect("list")
            .items
            .into_iter()
            .map(|m| m.meeting_id)
            .collect();
        assert_eq!(
            left,
            ["100000003", "100000004", "100000005"]
                .map(String::from)
                .into_iter()
                .collect()
        );
    }
}

mod meeting_index_tests {
    use super::meeting_index::*;

    #[tokio::test]
    async fn sqlite_receipts_reach_the_database_file_without_other_writes() {
        super::meeting_index::sqlite_receipts_reach_the_database_file_without_other_writes().await
    }

    testkit::on_both_databases!(
        upsert_repoints_a_meeting_and_delete_drops_only_that_apps_row,
        pmi_rows_replace_each_other_and_outlive_webhook_rows,
        webhook_receipt_applies_its_change_once_and_never_without_it,
        concurrent_redeliveries_apply_exactly_once,
        upsert_if_host_writes_only_while_the_host_is_unchanged,
        one_vanished_connection_in_a_burst_fails_only_its_own_event,
        meetings_filter_and_paginate_newest_synced_first,
        app_webhook_timestamps_only_move_forward,
        an_apps_stale_webhooks_flag_is_set_once_and_cleared,
        connection_in_account_is_the_oldest_connected_one,
        housekeeping_drops_old_receipts_and_past_non_pmi_meetings,
    );
}

mod connection_upkeep {
    //! Issue 4 follow-ups: a grant kept after `invalid_client`, re-checked and
    //! reconnected or erased; the event log pruned.

    use std::time::Duration as StdDuration;

    use chrono::{Duration, Utc};
    use keeper::storage::{
        ConnectionState, DisconnectOutcome, EventPruning, FailureData, RefreshedTokens, Sealed,
    };

    use testkit::store::{app, connection, event, micros, project, state_change, TestStore};

    const LEASE: StdDuration = StdDuration::from_secs(60);

    async fn project_and_app(s: &TestStore) -> (String, String) {
        let p = project("acme");
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "client", Utc::now());
        s.insert_app(&a).await.expect("app");
        (p.id, a.id)
    }

    fn failure(code: &str) -> FailureData {
        FailureData {
            error: format!("Zoom said {code}."),
            code: code.to_owned(),
            timestamp: Utc::now(),
        }
    }

    fn refreshed(tag: &str) -> RefreshedTokens {
        RefreshedTokens {
            refresh_token: Sealed(format!("refresh {tag}").into_bytes()),
            access_token: Sealed(format!("access {tag}").into_bytes()),
            access_token_expires_at: micros(Utc::now() + Duration::hours(1)),
            refresh_due_at: micros(Utc::now() + Duration::days(30)),
            scopes: None,
        }
    }

    /// Inserts a connected connection of `user` and disconnects it with `code`,
    /// keeping its grant or not; returns its id.
    async fn disconnected(
        s: &TestStore,
        p: &str,
        a: &str,
        user: &str,
        code: &str,
        keep: bool,
    ) -> String {
        let c = connection(p, a, user, Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        let outcome = if keep {
            s.disconnect_connection_keeping_grant(
                &c.id,
                None,
                &failure(code),
                &event("disconnected"),
                Some(&state_change(&c.id, "disconnected")),
            )
            .await
        } else {
            s.disconnect_connection(
                &c.id,
                None,
                &failure(code),
                &event("disconnected"),
                Some(&state_change(&c.id, "disconnected")),
            )
            .await
        }
        .expect("disconnect");
        assert!(matches!(outcome, DisconnectOutcome::Disconnected(_)));
        c.id
    }

    pub async fn disconnecting_for_a_bad_client_secret_keeps_the_refresh_token(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let c = connection(&p, &a, "user-1", Utc::now());
        s.store
            .insert_connection(&c, &event("created"), None)
            .await
            .expect("insert");
        let leased = s
            .claim_connection_lease(&c.id, "w", LEASE)
            .await
            .expect("claim")
            .expect("claimed");
        // A stale fence changes nothing.
        let stale = s
            .disconnect_connection_keeping_grant(
                &c.id,
                Some(leased.fence - 1),
                &failure("invalid_client"),
                &event("disconnected"),
                Some(&state_change(&c.id, "disconnected")),
            )
            .await
            .expect("stale");
        assert!(matches!(stale, DisconnectOutcome::Unchanged));
        let outcome = s
            .disconnect_connection_keeping_grant(
                &c.id,
                Some(leased.fence),
                &failure("invalid_client"),
                &event("disconnected"),
                Some(&state_change(&c.id, "disconnected")),
            )
            .await
            .expect("disconnect");
        let DisconnectOutcome::Disconnected(row) = outcome else {
            panic!("expected a disconnect, got {outcome:?}");
        };
        assert_eq!(row.state, ConnectionState::Disconnected);
        assert_eq!(row.refresh_token, c.refresh_token, "the grant is kept");
        assert!(row.access_token.is_none() && row.access_token_expires_at.is_none());
        assert!(row.lease_owner.is_none() && row.lease_until.is_none());
        assert_eq!(row.fence, leased.fence + 1);
        assert_eq!(
            row.connection_failure_data.map(|f| f.code).as_deref(),
            Some("invalid_client")
        );
        assert_eq!(s.count_rows("connection_events", Some(&c.id)).await, 2);
        assert_eq!(s.list_outbox_events(&p, 10).await.expect("outbox").len(), 1);
        // Once disconnected, another disconnect (either kind) changes nothing.
        let again = s
            .disconnect_connection_keeping_grant(
                &c.id,
                None,
                &failure("invalid_client"),
                &event("disconnected"),
                Some(&state_change(&c.id, "disconnected")),
            )
            .await
            .expect("again");
        assert!(matches!(again, DisconnectOutcome::Unchanged));
        assert_eq!(s.list_outbox_events(&p, 10).await.expect("outbox").len(), 1);
        // Plain disconnects still erase both tokens.
        let erased = disconnected(&s, &p, &a, "user-2", "invalid_grant", false).await;
        let row = s
            .connection_by_id(&erased)
            .await
            .expect("get")
            .expect("found");
        assert!(row.refresh_token.is_none() && row.access_token.is_none());
    }

    pub async fn kept_grants_are_claimed_once_by_code_app_and_cursor(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let other_app = app(&p, "other-client", Utc::now());
        s.insert_app(&other_app).await.expect("app");
        let mut kept = Vec::new();
        for i in 0..5 {
            kept.push(disconnected(&s, &p, &a, &format!("kept-{i}"), "invalid_client", true).await);
        }
        kept.sort();
        // Not candidates: another code, erased tokens, another app, connected.
        disconnected(&s, &p, &a, "deauthorized", "app_deauthorized", true).await;
        disconnected(&s, &p, &a, "erased", "invalid_client", false).await;
        disconnected(&s, &p, &other_app.id, "elsewhere", "invalid_client", true).await;
        let live = connection(&p, &a, "live", Utc::now());
        s.store
            .insert_connection(&live, &event("created"), None)
            .await
            .expect("insert");

        let first = s
            .claim_disconnected_connections(&a, "invalid_client", None, "w1", 3, LEASE)
            .await
            .expect("claim");
        let ids: Vec<String> = first.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, kept[..3].to_vec(), "id order, limited");
        for c in &first {
            assert_eq!(c.lease_owner.as_deref(), Some("w1"));
            assert!(c.lease_until.is_some());
            assert_eq!(c.state, ConnectionState::Disconnected);
        }
        // Leased rows are skipped by another claimer, even from the start.
        let second = s
            .claim_disconnected_connections(&a, "invalid_client", None, "w2", 10, LEASE)
            .await
            .expect("claim");
        let ids: Vec<String> = second.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, kept[3..].to_vec());
        // The cursor walks on from where it is.
        assert!(s
            .claim_disconnected_connections(&a, "invalid_client", Some(&kept[4]), "w3", 10, LEASE)
            .await
            .expect("claim")
            .is_empty());
        // A released one can be claimed again.
        assert!(s
            .release_connection_lease(&first[0].id, first[0].fence, None)
            .await
            .expect("release"));
        let again = s
            .claim_disconnected_connections(&a, "invalid_client", None, "w4", 10, LEASE)
            .await
            .expect("claim");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, kept[0]);
        assert_eq!(again[0].fence, first[0].fence + 1);
        // A disconnected connection is never claimed for an ordinary refresh.
        assert!(s
            .claim_connection_lease(&kept[1], "x", LEASE)
            .await
            .expect("claim")
            .is_none());
    }

    pub async fn a_reconnect_is_fenced_and_writes_tokens_event_and_outbox(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let id = disconnected(&s, &p, &a, "user-1", "invalid_client", true).await;
        let claimed = s
            .claim_disconnected_connections(&a, "invalid_client", None, "w", 10, LEASE)
            .await
            .expect("claim")
            .pop()
            .expect("claimed");
        let tokens = refreshed("new");
        assert!(!s
            .reconnect_connection(
                &id,
                claimed.fence - 1,
                &tokens,
                &event("reconnected"),
                Some(&state_change(&id, "connected"))
            )
            .await
            .expect("stale"));
        assert_eq!(s.list_outbox_events(&p, 10).await.expect("outbox").len(), 1);
        assert!(s
            .reconnect_connection(
                &id,
                claimed.fence,
                &tokens,
                &event("reconnected"),
                Some(&state_change(&id, "connected"))
            )
            .await
            .expect("reconnect"));
        let row = s.connection_by_id(&id).await.expect("get").expect("found");
        assert_eq!(row.state, ConnectionState::Connected);
        assert!(row.connection_failure_data.is_none());
        assert_eq!(row.refresh_token, Some(tokens.refresh_token.clone()));
        assert_eq!(row.access_token, Some(tokens.access_token.clone()));
        assert_eq!(
            row.access_token_expires_at,
            Some(tokens.access_token_expires_at)
        );
        assert_eq!(row.refresh_due_at, Some(tokens.refresh_due_at));
        assert!(row.last_successful_token_refresh_at.is_some());
        assert!(row.lease_owner.is_none() && row.lease_until.is_none());
        let outbox = s.list_outbox_events(&p, 10).await.expect("outbox");
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox[0].payload["state"], "connected");
        assert_eq!(s.count_rows("connection_events", Some(&id)).await, 3);
        // A connected connection is not reconnected a second time.
        assert!(!s
            .reconnect_connection(
                &id,
                row.fence,
                &tokens,
                &event("reconnected"),
                Some(&state_change(&id, "connected"))
            )
            .await
            .expect("connected already"));
        assert_eq!(s.list_outbox_events(&p, 10).await.expect("outbox").len(), 2);
        // It is an ordinary connection again.
        assert!(s
            .claim_connection_lease(&id, "w", LEASE)
            .await
            .expect("claim")
            .is_some());
    }

    pub async fn an_erased_kept_grant_stays_disconnected_with_the_new_cause(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let id = disconnected(&s, &p, &a, "user-1", "invalid_client", true).await;
        let claimed = s
            .claim_disconnected_connections(&a, "invalid_client", None, "w", 10, LEASE)
            .await
            .expect("claim")
            .pop()
            .expect("claimed");
        assert!(!s
            .erase_disconnected_grant(
                &id,
                claimed.fence + 1,
                &failure("invalid_grant"),
                &event("disconnected")
            )
            .await
            .expect("stale"));
        assert!(s
            .erase_disconnected_grant(
                &id,
                claimed.fence,
                &failure("invalid_grant"),
                &event("disconnected")
            )
            .await
            .expect("erase"));
        let row = s.connection_by_id(&id).await.expect("get").expect("found");
        assert_eq!(row.state, ConnectionState::Disconnected);
        assert_eq!(
            row.connection_failure_data.map(|f| f.code).as_deref(),
            Some("invalid_grant")
        );
        assert!(row.refresh_token.is_none() && row.access_token.is_none());
        assert!(row.lease_owner.is_none());
        assert_eq!(s.count_rows("connection_events", Some(&id)).await, 3);
        assert_eq!(
            s.list_outbox_events(&p, 10).await.expect("outbox").len(),
            1,
            "no state change, no outbox row"
        );
        // Nothing left to re-check.
        assert!(s
            .claim_disconnected_connections(&a, "invalid_client", None, "w", 10, LEASE)
            .await
            .expect("claim")
            .is_empty());
    }

    /// Kinds of `connection_id`'s events, newest first.
    async fn kinds_of(s: &TestStore, p: &str, connection_id: &str) -> Vec<String> {
        s.list_connection_events(
            p,
            connection_id,
            &keeper::storage::PageRequest {
                cursor: None,
                limit: 100,
            },
        )
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| e.kind)
        .collect()
    }

    pub async fn pruning_keeps_the_newest_events_and_every_state_change(s: TestStore) {
        let (p, a) = project_and_app(&s).await;
        let mut ids = Vec::new();
        for user in ["user-1", "user-2", "user-3"] {
            let c = connection(&p, &a, user, Utc::now());
            s.store
                .insert_connection(&c, &event("created"), None)
                .await
                .expect("insert");
            ids.push(c.id);
        }
        ids.sort();
        // user-1 (first in id order): created, 10 refreshes, a sync, 10 more refreshes,
        // a disconnect and a reconnect, then 3 refreshes.
        let busy = ids[0].clone();
        for kind in std::iter::repeat_n("token_refreshed", 10)
            .chain(["sync_completed"])
            .chain(std::iter::repeat_n("token_refreshed", 10))
            .chain(["disconnected", "reconnected"])
            .chain(std::iter::repeat_n("token_refreshed", 3))
        {
            s.insert_connection_event(&busy, &event(kind))
                .await
                .expect("event");
        }
        // The others: a few refreshes, under the limit.
        for id in &ids[1..] {
            for _ in 0..3 {
                s.insert_connection_event(id, &event("token_refreshed"))
                    .await
                    .expect("event");
            }
        }
        let routine = ["token_refreshed", "sync_completed"];

        // One connection per step: the walk goes on from the cursor.
        let first = s
            .prune_connection_events(None, 1, 5, &routine)
            .await
            .expect("prune");
        assert_eq!(
            first,
            EventPruning {
                deleted: 21,
                next_after: Some(busy.clone()),
            }
        );
        assert_eq!(
            kinds_of(&s, &p, &busy).await,
            [
                "token_refreshed",
                "token_refreshed",
                "token_refreshed",
                "reconnected",
                "disconnected",
                "created",
            ],
            "the 5 newest and every older state change stay"
        );
        let second = s
            .prune_connection_events(Some(&busy), 5, 2, &routine)
            .await
            .expect("prune");
        assert_eq!(
            second.deleted, 2,
            "one old refresh of each other connection"
        );
        assert_eq!(second.next_after, None, "the walk reached the end");
        for id in &ids[1..] {
            assert_eq!(
                kinds_of(&s, &p, id).await,
                ["token_refreshed", "token_refreshed", "created"]
            );
        }
        // Pruning again changes nothing; an empty walk says so.
        assert_eq!(
            s.prune_connection_events(None, 10, 5, &routine)
                .await
                .expect("prune")
                .deleted,
            0
        );
        assert_eq!(
            s.prune_connection_events(Some("zoc_zzzzzzzzzzzzzzzz"), 10, 5, &routine)
                .await
                .expect("prune"),
            EventPruning::default()
        );
        assert_eq!(s.count_rows("connection_events", Some(&busy)).await, 6);
    }

    mod upkeep_tests {
        use super::*;

        testkit::on_both_databases!(
            disconnecting_for_a_bad_client_secret_keeps_the_refresh_token,
            kept_grants_are_claimed_once_by_code_app_and_cursor,
            a_reconnect_is_fenced_and_writes_tokens_event_and_outbox,
            an_erased_kept_grant_stays_disconnected_with_the_new_cause,
            pruning_keeps_the_newest_events_and_every_state_change,
        );
    }
}

// Meeting sync and `/my/{vanity}` lookups (issue 5).

mod meeting_sync_store {
    use std::time::Duration as StdDuration;

    use chrono::{DateTime, Duration, Utc};
    use keeper::storage::{
        CompletedSync, ConnectionRow, MeetingIndexChange, MeetingRow, MeetingSource, PageRequest,
        SyncCommit, SyncedMeeting,
    };

    use testkit::store::{app, connection, event, project, TestStore};

    const CLAIM: StdDuration = StdDuration::from_secs(600);

    /// A project with one app and a connection per `(user, next_sync_at,
    /// local recording)`; returns (project, app, connections).
    async fn setup(
        s: &TestStore,
        name: &str,
        users: &[(&str, Option<DateTime<Utc>>, bool)],
    ) -> (String, String, Vec<ConnectionRow>) {
        let p = project(name);
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "client", Utc::now());
        s.insert_app(&a).await.expect("app");
        let mut out = Vec::new();
        for (i, (user, next_sync_at, local_recording)) in users.iter().enumerate() {
            let mut c = connection(&p.id, &a.id, user, Utc::now() + Duration::seconds(i as i64));
            c.next_sync_at = *next_sync_at;
            c.is_local_recording_token_supported = *local_recording;
            c.personal_meeting_url = Some(format!("https://acme.zoom.us/my/{user}.Room"));
            s.store
                .insert_connection(&c, &event("created"), None)
                .await
                .expect("connection");
            out.push(c);
        }
        (p.id, a.id, out)
    }

    fn synced(id: &str, host_confirmed: bool) -> SyncedMeeting {
        SyncedMeeting {
            meeting_id: id.to_owned(),
            topic: Some(format!("topic {id}")),
            start_time: Some(Utc::now() + Duration::hours(1)),
            host_confirmed,
            host_user_id: None,
        }
    }

    fn done(c: &ConnectionRow, meetings: Vec<SyncedMeeting>, pmi: Option<&str>) -> CompletedSync {
        CompletedSync {
            connection_id: c.id.clone(),
            claim: c.next_sync_at.expect("claimed rows carry their claim"),
            meetings,
            pmi: pmi.map(str::to_owned),
            personal_meeting_url: pmi.map(|p| format!("https://zoom.us/j/{p}")),
            next_sync_at: Utc::now() + Duration::hours(24),
            event: event("sync_completed"),
            ends_account_pass: false,
        }
    }

    async fn index(s: &TestStore, c: &ConnectionRow, source: MeetingSource, meeting_id: &str) {
        s.apply_meeting_change(&MeetingIndexChange::Upsert(MeetingRow {
            project_id: c.project_id.clone(),
            app_id: c.app_id.clone(),
            meeting_id: meeting_id.to_owned(),
            connection_id: c.id.clone(),
            source,
            topic: None,
            start_time: None,
            synced_at: Utc::now() - Duration::minutes(5),
            host_user_id: None,
        }))
        .await
        .expect("index row");
    }

    async fn host(
        s: &TestStore,
        project_id: &str,
        meeting_id: &str,
    ) -> Option<(String, MeetingSource)> {
        s.meeting_hosts(project_id, None, meeting_id)
            .await
            .expect("hosts")
            .into_iter()
            .next()
            .map(|m| (m.connection_id, m.source))
    }

    pub async fn due_syncs_are_claimed_once_and_the_claim_fences_the_write_back(s: TestStore) {
        let later = Utc::now() + Duration::hours(1);
        let (_, _, cs) = setup(
            &s,
            "claims",
            &[
                ("due", None, true),
                ("past", Some(Utc::now() - Duration::minutes(1)), true),
                ("later", Some(later), true),
                ("off", None, false),
            ],
        )
        .await;
        let (a, b) = tokio::join!(s.claim_due_syncs(10, CLAIM), s.claim_due_syncs(10, CLAIM));
        let (a, b) = (a.expect("claim"), b.expect("claim"));
        let mut ids: Vec<&str> = a.iter().chain(&b).map(|c| c.user_id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            vec!["due", "past"],
            "each due one claimed exactly once"
        );
        let claimed = a
            .into_iter()
            .chain(b)
            .find(|c| c.user_id == "due")
            .expect("due");
        let claim = claimed.next_sync_at.expect("claim");
        let in_ten_minutes = s.now().await.expect("now") + Duration::minutes(10);
        assert!((claim - in_ten_minutes).num_seconds().abs() < 5, "{claim}");
        assert_eq!(claimed.fence, cs[0].fence, "the refresh fence is untouched");
        assert!(claimed.lease_owner.is_none());

        let mut stale = claimed.clone();
        stale.next_sync_at = Some(claim - Duration::seconds(1));
        assert_eq!(
            s.complete_meeting_sync(&done(&stale, vec![synced("123456789", true)], None))
                .await
                .expect("complete"),
            SyncCommit::LostClaim
        );
        let d = done(&claimed, vec![synced("123456789", true)], None);
        assert!(matches!(
            s.complete_meeting_sync(&d).await.expect("complete"),
            SyncCommit::Committed { indexed: 1, .. }
        ));
        assert_eq!(
            s.complete_meeting_sync(&d).await.expect("complete"),
            SyncCommit::LostClaim,
            "a claim is written back once"
        );
        let row = s
            .connection_by_id(&claimed.id)
            .await
            .expect("read")
            .expect("row");
        assert_eq!(
            row.next_sync_at.map(|t| t.timestamp()),
            Some(d.next_sync_at.timestamp())
        );
        assert!(row.last_successful_sync_at.is_some());
        assert_eq!(row.last_successful_sync_at, row.last_attempted_sync_at);
        assert!(s
            .claim_due_syncs(10, CLAIM)
            .await
            .expect("claim")
            .is_empty());
    }

    pub async fn a_sync_request_or_a_held_refresh_lease_keeps_the_claim_away(s: TestStore) {
        let (p, _, cs) = setup(&s, "voids", &[("a", None, true), ("b", None, true)]).await;
        // A refresh in progress: not claimed for a sync.
        let leased = s
            .claim_connection_lease(&cs[1].id, "someone", StdDuration::from_secs(60))
            .await
            .expect("lease")
            .expect("leased");
        let claimed = s.claim_due_syncs(10, CLAIM).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, cs[0].id);
        // A sync requested while one runs voids the running one's claim…
        assert!(s
            .schedule_connection_sync(&p, &cs[0].id)
            .await
            .expect("schedule"));
        assert_eq!(
            s.complete_meeting_sync(&done(&claimed[0], vec![], None))
                .await
                .expect("complete"),
            SyncCommit::LostClaim
        );
        // …and is claimed itself.
        let again = s.claim_due_syncs(10, CLAIM).await.expect("claim");
        assert_eq!(again.len(), 1);
        assert!(s
            .release_connection_lease(&leased.id, leased.fence, None)
            .await
            .expect("release"));
        assert_eq!(s.claim_due_syncs(10, CLAIM).await.expect("claim").len(), 1);
    }

    pub async fn completion_replaces_sync_rows_keeps_webhook_rows_and_never_takes_a_pmi(
        s: TestStore,
    ) {
        let (p, _, cs) = setup(&s, "replace", &[("a", None, true), ("b", None, true)]).await;
        let (a, b) = (&cs[0], &cs[1]);
        index(&s, a, MeetingSource::Sync, "111111111").await; // stale: removed
        index(&s, a, MeetingSource::Webhook, "222222222").await; // not listed: kept
        index(&s, b, MeetingSource::Webhook, "333333333").await; // listed, host unsaid: held
        index(&s, b, MeetingSource::Webhook, "444444444").await; // listed, host a: taken
        index(&s, b, MeetingSource::Pmi, "555555555").await; // a PMI: never taken
        index(&s, b, MeetingSource::Sync, "666666666").await; // b's sync row: taken
        index(&s, a, MeetingSource::Pmi, "888888888").await; // a's old PMI: replaced
        let claimed = s
            .claim_due_syncs(10, CLAIM)
            .await
            .expect("claim")
            .into_iter()
            .find(|c| c.id == a.id)
            .expect("a claimed");
        let result = s
            .complete_meeting_sync(&done(
                &claimed,
                vec![
                    synced("333333333", false),
                    synced("444444444", true),
                    synced("555555555", true),
                    synced("666666666", false),
                    synced("777777777", true),
                ],
                Some("999999999"),
            ))
            .await
            .expect("complete");
        assert_eq!(
            result,
            SyncCommit::Committed {
                indexed: 3,
                held_elsewhere: 2,
                removed: 1
            }
        );
        let a_sync = (a.id.clone(), MeetingSource::Sync);
        assert_eq!(host(&s, &p, "111111111").await, None);
        assert_eq!(
            host(&s, &p, "222222222").await,
            Some((a.id.clone(), MeetingSource::Webhook))
        );
        assert_eq!(
            host(&s, &p, "333333333").await,
            Some((b.id.clone(), MeetingSource::Webhook))
        );
        assert_eq!(host(&s, &p, "444444444").await, Some(a_sync.clone()));
        assert_eq!(
            host(&s, &p, "555555555").await,
            Some((b.id.clone(), MeetingSource::Pmi))
        );
        assert_eq!(host(&s, &p, "666666666").await, Some(a_sync.clone()));
        assert_eq!(host(&s, &p, "777777777").await, Some(a_sync));
        assert_eq!(host(&s, &p, "888888888").await, None);
        assert_eq!(
            host(&s, &p, "999999999").await,
            Some((a.id.clone(), MeetingSource::Pmi))
        );
        let row = s.connection_by_id(&a.id).await.expect("read").expect("row");
        assert_eq!(row.pmi.as_deref(), Some("999999999"));
        assert_eq!(
            row.personal_meeting_url.as_deref(),
            Some("https://zoom.us/j/999999999")
        );
        let events = s
            .list_connection_events(
                &p,
                &a.id,
                &PageRequest {
                    cursor: None,
                    limit: 10,
                },
            )
            .await
            .expect("events");
        assert_eq!(events.items[0].kind, "sync_completed");
    }

    pub async fn a_failed_sync_is_rescheduled_under_its_claim(s: TestStore) {
        let (p, _, cs) = setup(&s, "failures", &[("a", None, true)]).await;
        let claimed = s.claim_due_syncs(10, CLAIM).await.expect("claim").remove(0);
        let claim = claimed.next_sync_at.expect("claim");
        let retry_at = Utc::now() + Duration::minutes(3);
        assert!(s
            .reschedule_meeting_sync(
                &cs[0].id,
                claim,
                retry_at,
                true,
                Some(&event("sync_failed"))
            )
            .await
            .expect("reschedule"));
        assert!(
            !s.reschedule_meeting_sync(&cs[0].id, claim, retry_at, true, None)
                .await
                .expect("reschedule"),
            "the claim is spent"
        );
        let row = s
            .connection_by_id(&cs[0].id)
            .await
            .expect("read")
            .expect("row");
        assert!(row.last_attempted_sync_at.is_some());
        assert!(row.last_successful_sync_at.is_none());
        assert_eq!(
            row.next_sync_at.map(|t| t.timestamp()),
            Some(retry_at.timestamp())
        );
        assert!(s
            .claim_due_syncs(10, CLAIM)
            .await
            .expect("claim")
            .is_empty());
        let events = s
            .list_connection_events(
                &p,
                &cs[0].id,
                &PageRequest {
                    cursor: None,
                    limit: 10,
                },
            )
            .await
            .expect("events");
        assert_eq!(events.items[0].kind, "sync_failed");

        // Handing a claim back (shutdown) records no attempt.
        let (_, _, fresh) = setup(&s, "handback", &[("b", None, true)]).await;
        let claimed = s.claim_due_syncs(10, CLAIM).await.expect("claim").remove(0);
        assert_eq!(claimed.id, fresh[0].id);
        assert!(s
            .reschedule_meeting_sync(
                &claimed.id,
                claimed.next_sync_at.expect("claim"),
                Utc::now(),
                false,
                None
            )
            .await
            .expect("hand back"));
        let row = s
            .connection_by_id(&claimed.id)
            .await
            .expect("read")
            .expect("row");
        assert!(row.last_attempted_sync_at.is_none());
        assert_eq!(s.claim_due_syncs(10, CLAIM).await.expect("claim").len(), 1);
    }

    pub async fn an_account_pass_is_staged_under_its_claim_and_resumed_or_begun_again(
        s: TestStore,
    ) {
        let later = Some(Utc::now() + Duration::hours(5));
        let (_, app_id, cs) = setup(
            &s,
            "account",
            &[("admin", None, true), ("own", later, true)],
        )
        .await;
        let claimed = s.claim_due_syncs(1, CLAIM).await.expect("claim").remove(0);
        assert_eq!(claimed.id, cs[0].id);
        let claim = claimed.next_sync_at.expect("claim");
        let long_ago = Utc::now() - Duration::days(3);
        let pass = s
            .resume_account_sync_pass(&claimed.id, claim, long_ago)
            .await
            .expect("pass")
            .expect("the claim holds");
        assert!(pass.began && pass.users_done.is_empty());
        let meeting = |id: &str, host: &str| SyncedMeeting {
            meeting_id: id.to_owned(),
            topic: Some(format!("topic {id}")),
            start_time: None,
            host_confirmed: true,
            host_user_id: Some(host.to_owned()),
        };
        assert!(s
            .stage_account_user(&claimed.id, claim, "u1", 3, &[meeting("900000001", "u1")])
            .await
            .expect("stage"));
        // A user staged twice counts once; a meeting listed twice is staged once.
        assert!(s
            .stage_account_user(&claimed.id, claim, "u1", 3, &[meeting("900000009", "u1")])
            .await
            .expect("stage"));
        assert!(s
            .stage_account_user(
                &claimed.id,
                claim,
                "u2",
                3,
                &[meeting("900000002", "u2"), meeting("900000001", "u2")]
            )
            .await
            .expect("stage"));
        let row = s
            .connection_by_id(&claimed.id)
            .await
            .expect("read")
            .expect("row");
        assert_eq!(
            (row.sync_users_done, row.sync_users_total),
            (Some(2), Some(3))
        );
        assert!(row.sync_pass_started_at.is_some());
        let staged = s
            .staged_account_meetings(&claimed.id)
            .await
            .expect("staged");
        assert_eq!(
            staged
                .iter()
                .map(|m| (m.meeting_id.as_str(), m.host_user_id.as_deref()))
                .collect::<Vec<_>>(),
            [("900000001", Some("u1")), ("900000002", Some("u2"))]
        );

        // The same pass resumes under a new claim with the users it read.
        assert!(s
            .reschedule_meeting_sync(&claimed.id, claim, Utc::now(), true, None)
            .await
            .expect("pause"));
        let again = s.claim_due_syncs(1, CLAIM).await.expect("claim").remove(0);
        let claim2 = again.next_sync_at.expect("claim");
        let resumed = s
            .resume_account_sync_pass(&again.id, claim2, long_ago)
            .await
            .expect("pass")
            .expect("held");
        assert!(!resumed.began);
        assert_eq!(resumed.started_at, pass.started_at);
        assert_eq!(
            resumed.users_done,
            ["u1".to_owned(), "u2".to_owned()].into()
        );
        // A void claim writes nothing.
        assert!(s
            .resume_account_sync_pass(&again.id, claim, long_ago)
            .await
            .expect("pass")
            .is_none());
        assert!(!s
            .stage_account_user(&again.id, claim, "u3", 3, &[meeting("900000003", "u3")])
            .await
            .expect("stage"));
        assert_eq!(
            s.staged_account_meetings(&again.id)
                .await
                .expect("staged")
                .len(),
            2
        );

        // Completing the pass clears its staging and keeps the counts.
        let mut finished = done(&again, staged, None);
        finished.ends_account_pass = true;
        assert!(matches!(
            s.complete_meeting_sync(&finished).await.expect("complete"),
            SyncCommit::Committed { indexed: 2, .. }
        ));
        let row = s
            .connection_by_id(&again.id)
            .await
            .expect("read")
            .expect("row");
        assert!(row.sync_pass_started_at.is_none());
        assert_eq!(
            (row.sync_users_done, row.sync_users_total),
            (Some(2), Some(3))
        );
        assert!(s
            .staged_account_meetings(&again.id)
            .await
            .expect("staged")
            .is_empty());

        // A pass that began before `fresh_after` is begun again, empty.
        s.reschedule_meeting_sync(&again.id, finished.next_sync_at, Utc::now(), true, None)
            .await
            .expect("due");
        let third = s.claim_due_syncs(1, CLAIM).await.expect("claim").remove(0);
        let claim3 = third.next_sync_at.expect("claim");
        let p1 = s
            .resume_account_sync_pass(&third.id, claim3, long_ago)
            .await
            .expect("pass")
            .expect("held");
        assert!(p1.began);
        s.stage_account_user(&third.id, claim3, "u1", 3, &[meeting("900000001", "u1")])
            .await
            .expect("stage");
        let p2 = s
            .resume_account_sync_pass(&third.id, claim3, Utc::now() + Duration::seconds(1))
            .await
            .expect("pass")
            .expect("held");
        assert!(p2.began && p2.users_done.is_empty());
        assert!(s
            .staged_account_meetings(&third.id)
            .await
            .expect("staged")
            .is_empty());

        // Users with their own connected connection (local recording on), not this one.
        assert_eq!(
            s.users_with_own_connection(&app_id, &cs[0].id)
                .await
                .expect("users"),
            ["own".to_owned()].into()
        );
    }

    pub async fn personal_links_are_found_case_insensitively_within_the_project(s: TestStore) {
        let (p, a, _) = setup(&s, "links", &[("alice", None, true), ("bob", None, true)]).await;
        let (other, _, _) = setup(&s, "elsewhere", &[("alice", None, true)]).await;
        let found = s
            .connections_by_personal_link(&p, None, "alice.room")
            .await
            .expect("lookup");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].user_id, "alice");
        assert_eq!(found[0].project_id, p);
        assert_eq!(
            s.connections_by_personal_link(&p, Some(&a), "ALICE.ROOM")
                .await
                .expect("lookup")
                .len(),
            1
        );
        assert!(s
            .connections_by_personal_link(&p, Some("zoa_nope"), "alice.room")
            .await
            .expect("lookup")
            .is_empty());
        assert!(s
            .connections_by_personal_link(&p, None, "carol.room")
            .await
            .expect("lookup")
            .is_empty());
        assert_eq!(
            s.connections_by_personal_link(&other, None, "alice.room")
                .await
                .expect("lookup")
                .len(),
            1
        );
    }
}

mod meeting_sync_store_tests {
    use super::meeting_sync_store::*;

    testkit::on_both_databases!(
        due_syncs_are_claimed_once_and_the_claim_fences_the_write_back,
        a_sync_request_or_a_held_refresh_lease_keeps_the_claim_away,
        completion_replaces_sync_rows_keeps_webhook_rows_and_never_takes_a_pmi,
        a_failed_sync_is_rescheduled_under_its_claim,
        personal_links_are_found_case_insensitively_within_the_project,
        an_account_pass_is_staged_under_its_claim_and_resumed_or_begun_again,
    );
}

mod webhook_store {
    //! Outgoing webhooks (issue 6): subscriptions, the outbox fan-out, delivery
    //! claims and write-backs, resend, the previous signing secret.

    use std::time::Duration as StdDuration;

    use chrono::{Duration, Utc};
    use keeper::storage::{
        DeliveryAttempt, DeliveryStatus, Page, PageRequest, Sealed, StoreError, WebhookDeliveryRow,
        WebhookSubscriptionRow, WebhookSubscriptionUpdate, WEBHOOK_SUBSCRIPTION_LIMIT,
    };
    use serde_json::json;

    use testkit::store::{app, micros, project, state_change, TestStore};

    const TRIGGER: &str = "zoom_oauth_connection.state_change";

    fn subscription(project_id: &str, n: i64, triggers: &[&str]) -> WebhookSubscriptionRow {
        let at = micros(Utc::now() + Duration::milliseconds(n));
        WebhookSubscriptionRow {
            id: keeper::ids::IdKind::WebhookSubscription.generate(),
            project_id: project_id.to_owned(),
            url: format!("https://example.com/{n}"),
            triggers: triggers.iter().map(|t| (*t).to_owned()).collect(),
            is_active: true,
            created_at: at,
            updated_at: at,
        }
    }

    /// A project with one connection; returns (project id, connection id).
    async fn project_with_connection(s: &TestStore, name: &str) -> (String, String) {
        let p = project(name);
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "client", Utc::now());
        s.insert_app(&a).await.expect("app");
        let c = s
            .insert_connection(&p.id, &a.id, "user", Some(&Sealed(vec![7; 40])), None)
            .await;
        (p.id, c)
    }

    /// Writes one outbox event for the connection (through a real disconnect).
    async fn disconnect(s: &TestStore, connection: &str) {
        let failure = keeper::storage::FailureData {
            error: "gone".to_owned(),
            code: "invalid_grant".to_owned(),
            timestamp: Utc::now(),
        };
        let outcome = s
            .disconnect_connection(
                connection,
                None,
                &failure,
                &testkit::store::event("disconnected"),
                Some(&state_change(connection, "disconnected")),
            )
            .await
            .expect("disconnect");
        assert!(matches!(
            outcome,
            keeper::storage::DisconnectOutcome::Disconnected(_)
        ));
    }

    fn first_page(limit: u32) -> PageRequest {
        PageRequest {
            cursor: None,
            limit,
        }
    }

    async fn all_deliveries(s: &TestStore, p: &str, sub: &str) -> Vec<WebhookDeliveryRow> {
        let page: Page<WebhookDeliveryRow> = s
            .list_webhook_deliveries(p, sub, None, &first_page(100))
            .await
            .expect("list");
        page.items
    }

    pub async fn subscriptions_round_trip_are_capped_and_scoped(s: TestStore) {
        let (p, _) = project_with_connection(&s, "one").await;
        let (other, _) = project_with_connection(&s, "two").await;
        let first = subscription(&p, 0, &[TRIGGER]);
        s.insert_webhook_subscription(&first, 2).await.expect("1");
        s.insert_webhook_subscription(&subscription(&p, 1, &[TRIGGER]), 2)
            .await
            .expect("2");
        let err = s
            .insert_webhook_subscription(&subscription(&p, 2, &[TRIGGER]), 2)
            .await
            .expect_err("over the cap");
        assert!(
            matches!(err, StoreError::Conflict { constraint } if constraint == WEBHOOK_SUBSCRIPTION_LIMIT),
            "{err:?}"
        );
        // The cap is per project.
        s.insert_webhook_subscription(&subscription(&other, 0, &[TRIGGER]), 2)
            .await
            .expect("other project");

        let got = s
            .get_webhook_subscription(&p, &first.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(got, first);
        assert!(s
            .get_webhook_subscription(&other, &first.id)
            .await
            .expect("get")
            .is_none());
        let page = s
            .list_webhook_subscriptions(&p, &first_page(1))
            .await
            .expect("list");
        assert_eq!(page.items.len(), 1);
        assert!(page.has_more);
        assert_ne!(page.items[0].id, first.id, "newest first");

        let later = micros(Utc::now() + Duration::seconds(5));
        let updated = s
            .update_webhook_subscription(
                &p,
                &first.id,
                &WebhookSubscriptionUpdate {
                    is_active: Some(false),
                    ..Default::default()
                },
                later,
            )
            .await
            .expect("update")
            .expect("exists");
        assert!(!updated.is_active);
        assert_eq!(updated.url, first.url);
        assert_eq!(updated.triggers, first.triggers);
        assert_eq!(updated.updated_at, later);
        assert!(s
            .update_webhook_subscription(&other, &first.id, &Default::default(), later)
            .await
            .expect("update")
            .is_none());
        assert!(!s
            .delete_webhook_subscription(&other, &first.id)
            .await
            .expect("delete"));
        assert!(s
            .delete_webhook_subscription(&p, &first.id)
            .await
            .expect("delete"));
        assert!(s
            .get_webhook_subscription(&p, &first.id)
            .await
            .expect("get")
            .is_none());
    }

    pub async fn outbox_events_fan_out_once_to_active_matching_subscriptions(s: TestStore) {
        let (p, c) = project_with_connection(&s, "one").await;
        let (other, other_c) = project_with_connection(&s, "two").await;
        let a = subscription(&p, 0, &[TRIGGER]);
        let b = subscription(&p, 1, &[TRIGGER]);
        let mut inactive = subscription(&p, 2, &[TRIGGER]);
        inactive.is_active = false;
        let elsewhere = subscription(&other, 0, &[TRIGGER]);
        for sub in [&a, &b, &inactive, &elsewhere] {
            s.insert_webhook_subscription(sub, 10)
                .await
                .expect("insert");
        }
        disconnect(&s, &c).await;
        disconnect(&s, &other_c).await;

        // Two dispatchers at once: each event is fanned out exactly once.
        let (x, y) = tokio::join!(s.dispatch_outbox_events(100), s.dispatch_outbox_events(100));
        let (x, y) = (x.expect("dispatch"), y.expect("dispatch"));
        assert_eq!(x.events + y.events, 2);
        assert_eq!(x.deliveries + y.deliveries, 3);
        let again = s.dispatch_outbox_events(100).await.expect("dispatch");
        assert_eq!((again.events, again.deliveries), (0, 0));
        assert!(s
            .list_outbox_events(&p, 10)
            .await
            .expect("outbox")
            .iter()
            .all(|e| e.dispatched_at.is_some()));

        let mut keys = Vec::new();
        for sub in [&a, &b] {
            let ds = all_deliveries(&s, &p, &sub.id).await;
            assert_eq!(ds.len(), 1);
            let d = &ds[0];
            assert_eq!(d.status, DeliveryStatus::Pending);
            assert_eq!(d.attempt_count, 0);
            assert_eq!(d.trigger, TRIGGER);
            assert_eq!(d.payload["idempotency_key"], d.idempotency_key.as_str());
            assert_eq!(d.payload["id"], c.as_str());
            assert!(uuid::Uuid::parse_str(&d.idempotency_key).is_ok());
            keys.push(d.idempotency_key.clone());
        }
        assert_ne!(keys[0], keys[1], "one key per subscription");
        assert!(all_deliveries(&s, &p, &inactive.id).await.is_empty());
        assert_eq!(all_deliveries(&s, &other, &elsewhere.id).await.len(), 1);
        // Scoped by project.
        assert!(all_deliveries(&s, &other, &a.id).await.is_empty());
    }

    pub async fn deliveries_are_claimed_once_fenced_retried_and_resent(s: TestStore) {
        let (p, c) = project_with_connection(&s, "one").await;
        let sub = subscription(&p, 0, &[TRIGGER]);
        s.insert_webhook_subscription(&sub, 10)
            .await
            .expect("insert");
        disconnect(&s, &c).await;
        s.dispatch_outbox_events(100).await.expect("dispatch");

        let lease = StdDuration::from_secs(60);
        let (x, y) = tokio::join!(
            s.claim_due_webhook_deliveries("one", 10, lease),
            s.claim_due_webhook_deliveries("two", 10, lease)
        );
        let (x, y) = (x.expect("claim"), y.expect("claim"));
        assert_eq!(x.len() + y.len(), 1, "claimed exactly once");
        let claimed = x.into_iter().chain(y).next().expect("one claim");
        assert!(claimed.lease_owner.is_some() && claimed.lease_until.is_some());

        let retry = DeliveryAttempt {
            status: DeliveryStatus::Pending,
            retry_in: Some(StdDuration::from_secs(3600)),
            responses: json!([{"status_code": 500}]),
        };
        assert!(s
            .record_webhook_attempt(&claimed.idempotency_key, claimed.fence, &retry)
            .await
            .expect("record"));
        assert!(
            !s.record_webhook_attempt(&claimed.idempotency_key, claimed.fence - 1, &retry)
                .await
                .expect("record"),
            "an old fence writes nothing"
        );
        let d = &all_deliveries(&s, &p, &sub.id).await[0];
        assert_eq!(d.attempt_count, 1);
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.responses, json!([{"status_code": 500}]));
        assert!(d.lease_owner.is_none());
        let next = d.next_attempt_at.expect("scheduled");
        assert!(next > Utc::now() + Duration::minutes(59));
        assert!(d.last_attempt_at.is_some() && d.succeeded_at.is_none());
        // Not due yet.
        assert!(s
            .claim_due_webhook_deliveries("one", 10, lease)
            .await
            .expect("claim")
            .is_empty());
        assert_eq!(
            s.list_webhook_deliveries(&p, &sub.id, Some(DeliveryStatus::Success), &first_page(10))
                .await
                .expect("list")
                .items
                .len(),
            0
        );

        // A resend makes it due now; another project cannot resend it.
        let (other, _) = project_with_connection(&s, "two").await;
        assert!(!s
            .resend_webhook_delivery(&other, &d.idempotency_key)
            .await
            .expect("resend"));
        assert!(s
            .resend_webhook_delivery(&p, &d.idempotency_key)
            .await
            .expect("resend"));
        let again = s
            .claim_due_webhook_deliveries("one", 10, lease)
            .await
            .expect("claim");
        assert_eq!(again.len(), 1);
        let done = DeliveryAttempt {
            status: DeliveryStatus::Success,
            retry_in: None,
            responses: json!([1, 2]),
        };
        assert!(s
            .record_webhook_attempt(&again[0].idempotency_key, again[0].fence, &done)
            .await
            .expect("record"));
        let d = &all_deliveries(&s, &p, &sub.id).await[0];
        assert_eq!(d.status, DeliveryStatus::Success);
        assert_eq!(d.attempt_count, 2);
        assert!(d.succeeded_at.is_some());
        assert!(s
            .claim_due_webhook_deliveries("one", 10, lease)
            .await
            .expect("claim")
            .is_empty());
        // Deleting the subscription deletes its deliveries.
        assert!(s
            .delete_webhook_subscription(&p, &sub.id)
            .await
            .expect("delete"));
        assert!(all_deliveries(&s, &p, &sub.id).await.is_empty());
    }

    pub async fn rotation_keeps_the_previous_secret_until_it_expires(s: TestStore) {
        let p = project("one");
        s.insert_project(&p).await.expect("project");
        assert!(s
            .previous_webhook_secret(&p.id)
            .await
            .expect("previous")
            .is_none());
        let until = micros(Utc::now() + Duration::hours(24));
        assert!(
            !s.rotate_project_webhook_secret(
                &p.id,
                &Sealed(vec![9, 9]),
                &Sealed(vec![5; 40]),
                &Sealed(vec![6; 40]),
                until
            )
            .await
            .expect("rotate"),
            "a stale current secret changes nothing"
        );
        assert!(s
            .rotate_project_webhook_secret(
                &p.id,
                &p.webhook_secret,
                &Sealed(vec![5; 40]),
                &Sealed(vec![6; 40]),
                until
            )
            .await
            .expect("rotate"));
        let row = s.project_by_id(&p.id).await.expect("get").expect("exists");
        assert_eq!(row.webhook_secret, Sealed(vec![5; 40]));
        let previous = s
            .previous_webhook_secret(&p.id)
            .await
            .expect("previous")
            .expect("kept");
        assert_eq!(previous.secret, Sealed(vec![6; 40]));
        assert_eq!(previous.until, until);
        // Once expired it is gone.
        assert!(s
            .rotate_project_webhook_secret(
                &p.id,
                &Sealed(vec![5; 40]),
                &Sealed(vec![3; 40]),
                &Sealed(vec![4; 40]),
                micros(Utc::now() - Duration::seconds(1))
            )
            .await
            .expect("rotate"));
        assert!(s
            .previous_webhook_secret(&p.id)
            .await
            .expect("previous")
            .is_none());
    }
}

mod webhook_store_tests {
    use super::webhook_store::*;

    testkit::on_both_databases!(
        subscriptions_round_trip_are_capped_and_scoped,
        outbox_events_fan_out_once_to_active_matching_subscriptions,
        deliveries_are_claimed_once_fenced_retried_and_resent,
        rotation_keeps_the_previous_secret_until_it_expires,
    );
}

/// Credentials in a database that vanishes at exit would be lost: refused, with why.
#[tokio::test]
async fn an_in_memory_sqlite_database_is_refused() {
    for url in ["sqlite::memory:", "sqlite://file?mode=memory"] {
        let err = keeper::storage::sqlite::SqliteStore::connect(url)
            .await
            .expect_err("in-memory");
        assert!(
            err.to_string().contains("in-memory SQLite database"),
            "{err}"
        );
    }
}

/// The pool writes with `synchronous=FULL` (2): a commit is on disk before it
/// returns, so a power cut cannot take back a rotated refresh token.
#[tokio::test]
async fn sqlite_pool_commits_are_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("durable.db");
    let store = keeper::storage::sqlite::SqliteStore::connect(path.to_str().expect("utf-8"))
        .await
        .expect("open");
    keeper::storage::DatabaseStore::migrate(&store)
        .await
        .expect("migrate");
    // Several connections at once, so each of them is asked, not one reused.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            store
                .sqlite_pool()
                .expect("SQLite")
                .acquire()
                .await
                .expect("connection"),
        );
    }
    for conn in &mut held {
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await
            .expect("pragma");
        assert_eq!(level, 2, "synchronous must be FULL (2)");
    }
}

mod retention {
    //! Housekeeping's deletes of finished webhook deliveries and fanned-out outbox
    //! events: pending deliveries and undispatched events always stay.

    use std::time::Duration as StdDuration;

    use chrono::{Duration, Utc};
    use keeper::storage::{
        DeliveryAttempt, DeliveryStatus, PageRequest, Sealed, WebhookSubscriptionRow,
    };

    use testkit::store::{app, event, micros, project, state_change, TestStore};

    pub async fn finished_deliveries_and_dispatched_events_go_pending_ones_stay(s: TestStore) {
        let p = project("acme");
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "client", Utc::now());
        s.insert_app(&a).await.expect("app");
        let now = micros(Utc::now());
        let sub = WebhookSubscriptionRow {
            id: keeper::ids::IdKind::WebhookSubscription.generate(),
            project_id: p.id.clone(),
            url: "https://example.com/hook".to_owned(),
            triggers: vec!["zoom_oauth_connection.state_change".to_owned()],
            is_active: true,
            created_at: now,
            updated_at: now,
        };
        s.insert_webhook_subscription(&sub, 10).await.expect("sub");
        // Four state changes: four outbox events.
        for user in ["u1", "u2", "u3", "u4"] {
            let c = s
                .insert_connection(&p.id, &a.id, user, Some(&Sealed(vec![7; 40])), None)
                .await;
            let failure = keeper::storage::FailureData {
                error: "gone".to_owned(),
                code: "invalid_grant".to_owned(),
                timestamp: Utc::now(),
            };
            s.disconnect_connection(
                &c,
                None,
                &failure,
                &event("disconnected"),
                Some(&state_change(&c, "disconnected")),
            )
            .await
            .expect("disconnect");
        }
        // Three fanned out (one delivery each), one not yet.
        let dispatched = s.dispatch_outbox_events(3).await.expect("dispatch");
        assert_eq!((dispatched.events, dispatched.deliveries), (3, 3));
        let claimed = s
            .claim_due_webhook_deliveries("w", 10, StdDuration::from_secs(60))
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 3);
        let outcomes = [
            (DeliveryStatus::Success, None),
            (DeliveryStatus::Failure, None),
            // Retrying: pending, due in an hour.
            (DeliveryStatus::Pending, Some(StdDuration::from_secs(3600))),
        ];
        for (row, (status, retry_in)) in claimed.iter().zip(outcomes) {
            let attempt = DeliveryAttempt {
                status,
                retry_in,
                responses: serde_json::json!([{"status_code": 500}]),
            };
            assert!(s
                .record_webhook_attempt(&row.idempotency_key, row.fence, &attempt)
                .await
                .expect("attempt"));
        }
        let retrying = claimed[2].idempotency_key.clone();

        // Everything is recent: a cutoff an hour ago deletes nothing.
        let hour_ago = Utc::now() - Duration::hours(1);
        assert_eq!(
            s.delete_finished_webhook_deliveries_before(hour_ago, 100)
                .await
                .expect("delete"),
            0
        );
        assert_eq!(
            s.delete_dispatched_outbox_events_before(hour_ago, 100)
                .await
                .expect("delete"),
            0
        );

        // A cutoff in the future: the finished ones go, one batch at a time.
        let later = Utc::now() + Duration::hours(1);
        assert_eq!(
            s.delete_finished_webhook_deliveries_before(later, 1)
                .await
                .expect("delete"),
            1
        );
        assert_eq!(
            s.delete_finished_webhook_deliveries_before(later, 100)
                .await
                .expect("delete"),
            1
        );
        assert_eq!(
            s.delete_finished_webhook_deliveries_before(later, 100)
                .await
                .expect("delete"),
            0
        );
        let left = s
            .list_webhook_deliveries(
                &p.id,
                &sub.id,
                None,
                &PageRequest {
                    cursor: None,
                    limit: 100,
                },
            )
            .await
            .expect("list");
        assert_eq!(left.items.len(), 1);
        assert_eq!(left.items[0].idempotency_key, retrying);
        assert_eq!(left.items[0].status, DeliveryStatus::Pending);

        assert_eq!(
            s.delete_dispatched_outbox_events_before(later, 100)
                .await
                .expect("delete"),
            3
        );
        let events = s.list_outbox_events(&p.id, 100).await.expect("outbox");
        assert_eq!(events.len(), 1, "the event not fanned out yet stays");
        assert!(events[0].dispatched_at.is_none());
        let depths = s.webhook_queue_depths().await.expect("depths");
        assert_eq!(depths.outbox_undispatched, 1);
        // ... and is still fanned out afterwards.
        let dispatched = s.dispatch_outbox_events(10).await.expect("dispatch");
        assert_eq!((dispatched.events, dispatched.deliveries), (1, 1));
    }
}

mod retention_tests {
    use super::retention::*;

    testkit::on_both_databases!(finished_deliveries_and_dispatched_events_go_pending_ones_stay);
}

mod app_recheck_store {
    //! The durable re-check after a client secret change (issue 10): the write that
    //! stores the secret makes it due; claims lease it; renewing and finishing hold
    //! only while nothing newer came in.

    use std::time::Duration as StdDuration;

    use chrono::Utc;
    use keeper::storage::{AppSecretsUpdate, Sealed};

    use testkit::store::{app, micros, project, TestStore};

    const LEASE: StdDuration = StdDuration::from_secs(60);
    /// A claim that runs out at once: what a process that died leaves behind.
    const RUN_OUT: StdDuration = StdDuration::ZERO;

    async fn new_client_secret(s: &TestStore, p: &str, a: &str, tag: &str) {
        let update = AppSecretsUpdate {
            client_secret: Some(Sealed(format!("secret {tag}").into_bytes())),
            webhook_secret: None,
        };
        s.update_app_secrets(p, a, &update, Utc::now())
            .await
            .expect("update")
            .expect("exists");
    }

    pub async fn a_new_client_secret_makes_the_recheck_due_and_claims_lease_it(s: TestStore) {
        let p = project("acme");
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "a", Utc::now());
        let b = app(&p.id, "b", Utc::now());
        s.insert_app(&a).await.expect("app a");
        s.insert_app(&b).await.expect("app b");
        assert!(s
            .claim_app_recheck(None, RUN_OUT)
            .await
            .expect("claim")
            .is_none());

        // A new webhook secret alone re-checks nothing.
        let webhook_only = AppSecretsUpdate {
            client_secret: None,
            webhook_secret: Some(Some(Sealed(vec![1; 8]))),
        };
        s.update_app_secrets(&p.id, &b.id, &webhook_only, Utc::now())
            .await
            .expect("update")
            .expect("exists");
        assert!(s
            .claim_app_recheck(None, RUN_OUT)
            .await
            .expect("claim")
            .is_none());

        new_client_secret(&s, &p.id, &a.id, "1").await;
        let before = micros(Utc::now());
        let claim = s
            .claim_app_recheck(None, LEASE)
            .await
            .expect("claim")
            .expect("due");
        assert_eq!(claim.app_id, a.id);
        assert!(
            claim.due_at >= before + chrono::Duration::seconds(59),
            "{claim:?}"
        );
        // Leased: nobody else takes it, by any way of asking.
        assert!(s
            .claim_app_recheck(None, LEASE)
            .await
            .expect("claim")
            .is_none());
        assert!(s
            .claim_app_recheck(Some(&a.id), LEASE)
            .await
            .expect("claim")
            .is_none());

        // Renewed while it runs; the old claim is void.
        let renewed = s
            .renew_app_recheck(&claim, LEASE)
            .await
            .expect("renew")
            .expect("still ours");
        assert_ne!(renewed.due_at, claim.due_at);
        assert!(!s.finish_app_recheck(&claim, None).await.expect("finish"));
        assert!(s.finish_app_recheck(&renewed, None).await.expect("finish"));
        // Cleared: not due even with a claim that runs out at once.
        assert!(s
            .claim_app_recheck(None, RUN_OUT)
            .await
            .expect("claim")
            .is_none());

        // Finishing with a retry makes it due again then.
        new_client_secret(&s, &p.id, &a.id, "2").await;
        let claim = s
            .claim_app_recheck(None, LEASE)
            .await
            .expect("claim")
            .expect("due");
        assert!(s
            .finish_app_recheck(&claim, Some(StdDuration::ZERO))
            .await
            .expect("finish"));
        let again = s
            .claim_app_recheck(None, LEASE)
            .await
            .expect("claim")
            .expect("due");
        assert_eq!(again.app_id, a.id);
        assert!(s.finish_app_recheck(&again, None).await.expect("finish"));
    }

    pub async fn a_client_secret_stored_during_a_recheck_keeps_it_due(s: TestStore) {
        let p = project("acme");
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "a", Utc::now());
        s.insert_app(&a).await.expect("app");
        new_client_secret(&s, &p.id, &a.id, "1").await;
        let claim = s
            .claim_app_recheck(None, LEASE)
            .await
            .expect("claim")
            .expect("due");
        // A PATCH while the re-check runs (with the secret it has not tried).
        new_client_secret(&s, &p.id, &a.id, "2").await;
        assert!(
            s.renew_app_recheck(&claim, LEASE)
                .await
                .expect("renew")
                .is_none(),
            "the claim is lost"
        );
        assert!(
            !s.finish_app_recheck(&claim, None).await.expect("finish"),
            "the newer change is not cleared"
        );
        let next = s.claim_app_recheck(None, LEASE).await.expect("claim");
        assert_eq!(next.map(|c| c.app_id), Some(a.id.clone()), "still due");
    }

    pub async fn an_abandoned_claim_is_taken_over_once_and_only_once(s: TestStore) {
        let p = project("acme");
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "a", Utc::now());
        s.insert_app(&a).await.expect("app");
        new_client_secret(&s, &p.id, &a.id, "1").await;
        // A process claims and dies; its lease runs out.
        let dead = s
            .claim_app_recheck(None, RUN_OUT)
            .await
            .expect("claim")
            .expect("due");
        // Two workers look at once: exactly one gets it.
        let (x, y) = tokio::join!(
            s.claim_app_recheck(None, LEASE),
            s.claim_app_recheck(None, LEASE)
        );
        let winners: Vec<_> = [x.expect("x"), y.expect("y")]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(winners[0].app_id, a.id);
        // The dead process's claim can neither renew nor clear it.
        assert!(s
            .renew_app_recheck(&dead, LEASE)
            .await
            .expect("renew")
            .is_none());
        assert!(!s.finish_app_recheck(&dead, None).await.expect("finish"));
        assert!(s
            .finish_app_recheck(&winners[0], None)
            .await
            .expect("finish"));
    }

    pub async fn the_oldest_due_recheck_comes_first_and_a_deleted_app_takes_its_own(s: TestStore) {
        let p = project("acme");
        s.insert_project(&p).await.expect("project");
        let a = app(&p.id, "a", Utc::now());
        let b = app(&p.id, "b", Utc::now());
        s.insert_app(&a).await.expect("app a");
        s.insert_app(&b).await.expect("app b");
        new_client_secret(&s, &p.id, &b.id, "b").await;
        tokio::time::sleep(StdDuration::from_millis(5)).await;
        new_client_secret(&s, &p.id, &a.id, "a").await;
        // Only the app asked for, when one is named.
        let named = s
            .claim_app_recheck(Some(&a.id), RUN_OUT)
            .await
            .expect("claim")
            .expect("due");
        assert_eq!(named.app_id, a.id);
        // a's claim ran out at once, but b has been due longer.
        let first = s
            .claim_app_recheck(None, LEASE)
            .await
            .expect("claim")
            .expect("due");
        assert_eq!(first.app_id, b.id);
        let second = s
            .claim_app_recheck(None, LEASE)
            .await
            .expect("claim")
            .expect("due");
        assert_eq!(second.app_id, a.id);
        assert!(s.finish_app_recheck(&first, None).await.expect("finish"));
        assert_eq!(
            s.delete_app(&p.id, &a.id).await.expect("delete"),
            keeper::storage::DeleteAppOutcome::Deleted
        );
        assert!(!s.finish_app_recheck(&second, None).await.expect("finish"));
        assert!(s
            .claim_app_recheck(None, RUN_OUT)
            .await
            .expect("claim")
            .is_none());
    }
}

mod app_recheck_store_tests {
    use super::app_recheck_store::*;

    testkit::on_both_databases!(
        a_new_client_secret_makes_the_recheck_due_and_claims_lease_it,
        a_client_secret_stored_during_a_recheck_keeps_it_due,
        an_abandoned_claim_is_taken_over_once_and_only_once,
        the_oldest_due_recheck_comes_first_and_a_deleted_app_takes_its_own,
    );
}

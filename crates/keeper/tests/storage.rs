//! Storage and vault behaviour, proven on SQLite and on PostgreSQL alike.

mod support;

use std::collections::HashSet;

use chrono::{Duration, Utc};
use keeper::storage::{
    AppSecretsUpdate, Cursor, DeleteAppOutcome, Direction, PageRequest, Sealed, StoreError,
    SEALED_COLUMNS,
};
use keeper::vault::{reseal_all, sealed_key_id, Keyring, Slot};
use secrecy::ExposeSecret as _;
use support::{api_key, app, micros, project, TestStore};

store_tests!(
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
    // A connection whose tokens were erased has nothing to re-seal.
    s.insert_connection(&p1.id, &a2.id, "erased", None, None)
        .await;

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
        ("projects", "webhook_secret", projects[0]),
        ("projects", "webhook_secret", projects[1]),
        ("zoom_oauth_apps", "client_secret", apps[0]),
        ("zoom_oauth_apps", "client_secret", apps[1]),
        ("zoom_oauth_apps", "webhook_secret", a1.id.as_str()),
        ("zoom_oauth_connections", "access_token", c.as_str()),
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

    // Step 2: re-seal. Five values change; a second run changes none.
    assert_eq!(reseal_all(&*s.store, &during).await.expect("reseal"), 5);
    assert_eq!(reseal_all(&*s.store, &during).await.expect("re-run"), 0);

    // Step 3: retire the old key. Everything opens with the new key alone…
    ring.retire_all_but_active();
    ring.save(&key_file).expect("save");
    let after = Keyring::load_or_create(&key_file).expect("reload").vault();
    assert_eq!(after.active_key_id(), new_id);
    let fields = s.sealed_fields(None, 100).await.expect("fields");
    assert_eq!(fields.len(), 5);
    let expected: std::collections::HashMap<(&str, &str), &[u8]> = [
        (("projects", "webhook_secret"), &[42u8; 32][..]),
        (("zoom_oauth_apps", "client_secret"), b"client-secret"),
        (("zoom_oauth_apps", "webhook_secret"), b"webhook-secret"),
        (
            ("zoom_oauth_connections", "refresh_token"),
            b"refresh-token",
        ),
        (("zoom_oauth_connections", "access_token"), b"access-token"),
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

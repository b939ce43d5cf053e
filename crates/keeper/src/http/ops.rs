//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/docs`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::core::metrics::{self, QueueDepths};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zoomkeeper",
        description = "A self-hosted Zoom OAuth vault and token broker for meeting bots. Authenticate with `Authorization: Token <api key>`. Query parameters an operation does not list are ignored, as Django REST Framework (Attendee) does."
    ),
    paths(
        super::apps::create_app,
        super::apps::list_apps,
        super::apps::get_app,
        super::apps::update_app,
        super::apps::delete_app,
        super::connections::create_connection,
        super::connections::list_connections,
        super::connections::get_connection,
        super::connections::update_connection,
        super::connections::delete_connection,
        super::connections::list_events,
        super::connections::sync,
        super::connections::access_token,
        super::connections::zak_token,
        super::connections::onbehalf_token,
        super::join_tokens::create_join_tokens,
        super::meetings::list_meetings,
        super::zoom_webhooks::receive_webhook,
        super::zoom_webhooks::receive_shared_webhook,
        super::webhooks::create_webhook,
        super::webhooks::list_webhooks,
        super::webhooks::get_webhook,
        super::webhooks::update_webhook,
        super::webhooks::delete_webhook,
        super::webhooks::list_deliveries,
        super::webhooks::resend_delivery,
        super::webhooks::get_secret,
        super::webhooks::rotate_secret,
        super::bot_platforms::create_bot_platform,
        super::bot_platforms::list_bot_platforms,
        super::bot_platforms::get_bot_platform,
        super::bot_platforms::update_bot_platform,
        super::bot_platforms::delete_bot_platform,
        super::bot_platforms::list_calls,
        super::bot_platforms::get_project,
        super::bot_platforms::update_project,
        super::bot_platforms::attendee_zoom_tokens,
        super::bot_platforms::recall_zak,
        super::bot_platforms::recall_obf,
        super::bot_platforms::recall_join_token,
        super::connect::create_session,
        super::connect::get_session,
        super::api_v2::apps::create_app,
        super::api_v2::apps::list_apps,
        super::api_v2::apps::get_app,
        super::api_v2::apps::update_app,
        super::api_v2::apps::delete_app,
        super::api_v2::credentials::create_credential,
        super::api_v2::credentials::list_credentials,
        super::api_v2::credentials::get_credential,
        super::api_v2::credentials::delete_credential,
        super::api_v2::credentials::access_token,
        super::api_v2::credentials::sync_meetings,
        super::api_v2::credentials::validate,
        super::api_v2::mappings::list_mappings,
        super::api_v2::logs::list_credential_logs,
        super::api_v2::logs::list_app_logs,
        healthz,
        readyz,
    ),
    components(schemas(
        ErrorBody,
        super::api_v2::RecallErrorBody,
        Status,
        super::zoom_webhooks::UrlValidationAnswer
    )),
    modifiers(&ApiKeyAuth),
    servers((url = "/", description = "This zoomkeeper (its `public_url`)")),
    tags(
        (name = "Operations", description = "Health, readiness and this document; `/metrics` (Prometheus metrics, OpenMetrics text) and `/docs` (this document, browsable) are left out of it"),
        (name = "Zoom OAuth apps", description = "Your Zoom apps' credentials"),
        (name = "Zoom OAuth connections", description = "Zoom users' grants to your apps"),
        (name = "Tokens", description = "Zoom tokens minted from a connection"),
        (name = "Meetings", description = "The meeting → host index"),
        (name = "Zoom webhooks", description = "Where Zoom sends your apps' events"),
        (name = "Webhooks", description = "Webhooks zoomkeeper sends you, and their signing secret"),
        (name = "Bot platforms", description = "Attendee and Recall: the URLs their bots ask for Zoom tokens, and the project's default ZAK user"),
        (name = "Hosted connect", description = "Links that connect a user's Zoom account without your own OAuth code"),
        (name = "Bot platform callbacks", description = "What the platforms' bots call (signed by the platform; no API key)"),
        (name = super::api_v2::TAG, description = "Recall.ai's managed Zoom OAuth API (`/api/v2`), for code written against Recall: the same apps and connections (Recall's credentials) under Recall's shapes — UUID ids, trailing slashes, `{\"detail\": …}` errors"),
    )
)]
pub struct ApiDoc;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Token <api key>`",
            ))),
        );
        // The answers any operation of a kind can give are said once, here, in the
        // error shape of the operation's API: 401 and 429 behind an API key, 413 and
        // 415 for JSON bodies, 503 where a token may be refreshing elsewhere or Zoom's
        // events are shed, and a default for anything else.
        let retry_after = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some("Seconds to wait before trying again."))
            .build();
        let recall_shape = |schema: &str, example: serde_json::Value| {
            // `/api/v2` answers `{detail, code}`; the rest `{error, code}`.
            if schema == "RecallErrorBody" {
                serde_json::json!({"detail": example["error"], "code": example["code"]})
            } else {
                example
            }
        };
        let error = |schema: &str, description: &str, retry: bool, example: serde_json::Value| {
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(schema)))
                    .example(Some(recall_shape(schema, example)))
                    .build(),
            );
            if retry {
                response = response.header("Retry-After", retry_after.clone());
            }
            response.build()
        };
        // Zoom's event URL is also served at Recall's path, as the same operation.
        if let Some(item) = openapi.paths.paths.get(super::zoom_webhooks::PATH) {
            let mut alias = item.clone();
            if let Some(post) = alias.post.as_mut() {
                post.operation_id = Some("receive_webhook_at_v2_path".to_owned());
                post.summary = Some(
                    "Zoom's events for one app, at the path Recall's apps give Zoom".to_owned(),
                );
            }
            openapi
                .paths
                .paths
                .insert(super::zoom_webhooks::ALIAS.to_owned(), alias);
        }
        add_page_examples(components);
        for (path, item) in openapi.paths.paths.iter_mut() {
            let schema = if super::api_v2::is_recall_path(path) {
                "RecallErrorBody"
            } else {
                "ErrorBody"
            };
            let unauthorized = error(
                schema,
                "Missing or invalid API key",
                false,
                json!({"error": "Invalid or disabled API key", "code": "invalid_api_key", "detail": "Invalid or disabled API key"}),
            );
            let rate_limited = error(
                schema,
                "`rate_limited`: too many requests for this project (or `zoom_rate_limited`: Zoom's limit); retry after `Retry-After`",
                true,
                json!({"error": "Too many requests for this project; retry in 1 s.", "code": "rate_limited"}),
            );
            let too_large = error(
                schema,
                "`payload_too_large`: the body is over 1 MiB",
                false,
                json!({"error": "The request body must be at most 1 MiB.", "code": "payload_too_large"}),
            );
            let not_json = error(
                schema,
                "`unsupported_media_type`: send the body as JSON (`Content-Type: application/json`)",
                false,
                json!({"error": "Send the request body as JSON with the header Content-Type: application/json.", "code": "unsupported_media_type"}),
            );
            let busy = error(
                schema,
                "`busy`: the connection's token is being refreshed by another process; retry after `Retry-After`",
                true,
                json!({"error": "Another process is refreshing this connection's token; retry after Retry-After.", "code": "busy"}),
            );
            let shed = error(
                schema,
                "`busy`: this process is handling as many Zoom events as it may at once (`zoom_webhooks_in_flight`); the event was not recorded, and Zoom sends it again later",
                true,
                json!({"error": "zoomkeeper is handling as many Zoom events as it may at once; this one was not recorded. Zoom sends it again later.", "code": "busy"}),
            );
            let other = error(
                schema,
                "Any other error, in the error shape",
                false,
                json!({"error": "Internal error", "code": "internal_error"}),
            );
            let mints_tokens = path.contains("token");
            let zoom_ingress = [
                super::zoom_webhooks::PATH,
                super::zoom_webhooks::ALIAS,
                super::zoom_webhooks::SHARED_PATH,
            ]
            .contains(&path.as_str());
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let json_body = operation
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"));
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, response: &utoipa::openapi::Response| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| response.clone().into());
                };
                if secured {
                    add("401", &unauthorized);
                    add("429", &rate_limited);
                    if mints_tokens {
                        add("503", &busy);
                    }
                }
                if zoom_ingress {
                    add("503", &shed);
                }
                if operation.request_body.is_some() {
                    add("413", &too_large);
                }
                if secured && json_body {
                    add("415", &not_json);
                }
                add("default", &other);
                // An operation's own 429, and 503 where a token is being refreshed,
                // wait for Retry-After too (`/readyz`'s 503 does not).
                let retried: &[&str] = if mints_tokens || zoom_ingress {
                    &["429", "503"]
                } else {
                    &["429"]
                };
                for &status in retried {
                    if let Some(utoipa::openapi::RefOr::T(response)) =
                        operation.responses.responses.get_mut(status)
                    {
                        response
                            .headers
                            .entry("Retry-After".to_owned())
                            .or_insert_with(|| retry_after.clone());
                    }
                }
            }
        }
    }
}

/// A list page's example is one page holding its item's example: the pages are
/// generic (`ListPage<T>`, `RecallPage<T>`), so their examples are composed here.
fn add_page_examples(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let pages: Vec<(String, String)> = components
        .schemas
        .keys()
        .filter_map(|name| {
            let (kind, item) = name.split_once('_')?;
            matches!(kind, "ListPage" | "RecallPage").then(|| (name.clone(), item.to_owned()))
        })
        .collect();
    for (page, item) in pages {
        let Some(RefOr::T(Schema::Object(item))) = components.schemas.get(&item) else {
            continue;
        };
        let Some(example) = item.example.clone() else {
            continue;
        };
        let next = if page.starts_with("RecallPage") {
            "https://zoomkeeper.example.com/api/v2/list/?cursor=cD0yMDI2LTEyLTAx"
        } else {
            "https://zoomkeeper.example.com/api/v1/list?cursor=eyJjIjoiMjAyNi0xMi0wMSJ9"
        };
        if let Some(RefOr::T(Schema::Object(page))) = components.schemas.get_mut(&page) {
            page.example = Some(json!({"next": next, "previous": null, "results": [example]}));
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Status {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "Operations",
    responses((status = 200, description = "Up", body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// How long `/readyz` waits for the database.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The database is reachable (it answers within 2 s).
#[utoipa::path(get, path = "/readyz", tag = "Operations",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    // Health checkers time out in a few seconds: a database that does not answer
    // within READY_WITHIN is unreachable, rather than a probe that hangs for the
    // pool's 10 s acquire timeout.
    match tokio::time::timeout(READY_WITHIN, state.keeper.store.ping()).await {
        Ok(Ok(())) => Ok(Json(Status { status: "ok" })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            Err(ApiError::NotReady {
                reason: "the database is unreachable",
            })
        }
        Err(_) => {
            tracing::warn!(
                within_s = READY_WITHIN.as_secs(),
                "readiness check: the database did not answer in time"
            );
            Err(ApiError::NotReady {
                reason: "the database did not answer within 2 s",
            })
        }
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let queues = match state.keeper.store.webhook_queue_depths().await {
        Ok(d) => Some(QueueDepths {
            deliveries_due: d.deliveries_due,
            outbox_undispatched: d.outbox_undispatched,
        }),
        // The counters are still worth serving; the gauges are left out.
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading webhook queue depths failed");
            None
        }
    };
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.keeper.metrics.render(queues),
    )
}

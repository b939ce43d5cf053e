//! Outgoing webhooks: the project's subscriptions, each one's deliveries (with
//! resend), and the signing secret — revealed and rotated only by a POST.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use super::{
    read_query, refused, render, see_other, when, FormErrors, Layout, Pager, Posted, Signed, When,
};
use crate::domain::webhooks::{self, SubscriptionChange, ROTATION_GRACE, TRIGGERS};
use crate::http::error::ApiError;
use crate::http::pagination::{List, ListPage, ListParams};
use crate::http::webhooks::subscriptions;
use crate::http::AppState;
use crate::storage::{DeliveryStatus, WebhookDeliveryRow, WebhookSubscriptionRow};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/dashboard/webhooks",
            get(webhooks_page).post(create_webhook),
        )
        .route(
            "/dashboard/webhook-secret",
            get(back_to_webhooks).post(reveal_secret),
        )
        .route(
            "/dashboard/webhook-secret/rotate",
            get(back_to_webhooks).post(rotate_secret),
        )
        .route(
            "/dashboard/webhooks/{id}",
            get(webhook_page).post(update_webhook),
        )
        .route("/dashboard/webhooks/{id}/delete", post(delete_webhook))
        .route(
            "/dashboard/webhooks/{id}/deliveries/{key}/resend",
            post(resend_delivery),
        )
}

// ---------------------------------------------------------------------------
// Shared by this section's pages and its siblings (bot platforms, connect links).

/// A posted form as its name/value pairs, for forms with repeated names
/// (checkboxes) and fields whose absence means something (an unticked box).
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, or "".
    pub(super) fn text(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Every value of `name`, in form order.
    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether `name` was sent (a ticked checkbox).
    pub(super) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

// ---------------------------------------------------------------------------
// The list, the create form and the signing secret

/// A trigger checkbox: its value, element id, and whether it is ticked.
struct TriggerBox {
    value: &'static str,
    id: String,
    checked: bool,
}

fn trigger_boxes(checked: &[String]) -> Vec<TriggerBox> {
    TRIGGERS
        .iter()
        .map(|t| TriggerBox {
            value: t,
            id: format!("trigger-{}", t.replace(['.', '_'], "-")),
            checked: checked.iter().any(|c| c == t),
        })
        .collect()
}

/// The signing secret, shown in the answer to a Reveal or Rotate POST.
struct ShownSecret {
    secret: String,
    /// After a rotation: until when the previous secret keeps signing too.
    previous_until: Option<When>,
}

#[derive(Template)]
#[template(path = "dashboard/webhooks.html")]
struct WebhooksPage {
    layout: Layout,
    subscriptions: Vec<WebhookSubscriptionRow>,
    pager: Pager,
    url: String,
    triggers: Vec<TriggerBox>,
    errors: FormErrors,
    secret: Option<ShownSecret>,
    grace_hours: u64,
    /// The `allow_private_callback_urls` setting, for the url field's hint.
    allow_private: bool,
}

impl WebhooksPage {
    fn created(&self, s: &WebhookSubscriptionRow) -> When {
        When(s.created_at)
    }
}

/// The list page; `form` is the create form's url and ticked triggers.
async fn webhooks_view(
    state: &AppState,
    signed: &Signed,
    raw_query: Option<&str>,
    status: StatusCode,
    form: (String, Vec<String>),
    errors: FormErrors,
    secret: Option<ShownSecret>,
) -> Response {
    let params: ListParams = match read_query(raw_query) {
        Ok(p) => p,
        Err(e) => return signed.error(e),
    };
    let request = match params.page_request(List::Webhooks) {
        Ok(r) => r,
        Err(e) => return signed.error(e),
    };
    let page = match webhooks::list(&*state.keeper.store, signed.project_id(), &request).await {
        Ok(page) => page,
        Err(e) => return signed.error(e.into()),
    };
    let listed = ListPage::of(
        List::Webhooks,
        "/dashboard/webhooks",
        &request,
        &page,
        |w| (w.created_at, w.id.clone()),
        Clone::clone,
    );
    render(
        status,
        WebhooksPage {
            layout: signed.layout("webhooks"),
            pager: Pager::from(&listed),
            subscriptions: listed.results,
            url: form.0,
            triggers: trigger_boxes(&form.1),
            errors,
            secret,
            grace_hours: ROTATION_GRACE.as_secs() / 3600,
            allow_private: state.keeper.config.allow_private_callback_urls,
        },
    )
}

fn default_form() -> (String, Vec<String>) {
    (
        String::new(),
        TRIGGERS.iter().map(|t| t.to_string()).collect(),
    )
}

async fn webhooks_page(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    webhooks_view(
        &state,
        &signed,
        query.as_deref(),
        StatusCode::OK,
        default_form(),
        FormErrors::none(),
        None,
    )
    .await
}

async fn back_to_webhooks() -> Response {
    see_other("/dashboard/webhooks")
}

async fn create_webhook(State(state): State<AppState>, posted: Posted<Fields>) -> Response {
    let Posted { signed, form } = posted;
    let url = form.text("url");
    let triggers = form.all("triggers");
    match webhooks::create(
        subscriptions(&state.keeper),
        signed.project_id(),
        &url,
        &triggers,
    )
    .await
    {
        Ok(row) => see_other(&format!("/dashboard/webhooks/{}", row.id)),
        Err(e) => {
            let (status, errors) = refused(e.into());
            webhooks_view(&state, &signed, None, status, (url, triggers), errors, None).await
        }
    }
}

async fn reveal_secret(State(state): State<AppState>, posted: Posted<super::NoFields>) -> Response {
    let signed = posted.signed;
    let keeper = &state.keeper;
    match webhooks::secret_base64(&*keeper.store, &keeper.vault, signed.project_id()).await {
        Ok(secret) => {
            webhooks_view(
                &state,
                &signed,
                None,
                StatusCode::OK,
                default_form(),
                FormErrors::none(),
                Some(ShownSecret {
                    secret,
                    previous_until: None,
                }),
            )
            .await
        }
        Err(e) => signed.error(e.into()),
    }
}

async fn rotate_secret(State(state): State<AppState>, posted: Posted<super::NoFields>) -> Response {
    let signed = posted.signed;
    let keeper = &state.keeper;
    let rotated = webhooks::rotate_secret(
        &*keeper.store,
        &keeper.vault,
        &keeper.clock,
        signed.project_id(),
    )
    .await;
    match rotated {
        Ok(secret) => {
            tracing::info!(project_id = %signed.project.id, "webhook signing secret rotated in the dashboard");
            let until =
                keeper.clock.now() + chrono::Duration::from_std(ROTATION_GRACE).unwrap_or_default();
            webhooks_view(
                &state,
                &signed,
                None,
                StatusCode::OK,
                default_form(),
                FormErrors::none(),
                Some(ShownSecret {
                    secret,
                    previous_until: Some(When(until)),
                }),
            )
            .await
        }
        Err(e) => signed.error(e.into()),
    }
}

// ---------------------------------------------------------------------------
// One subscription and its deliveries

/// A delivery as its row shows it.
struct DeliveryView {
    key: String,
    trigger: String,
    status: &'static str,
    attempts: i64,
    /// The last attempt's HTTP status, or why it got none.
    last_response: String,
    last_attempt: String,
    /// Only while pending (as the API shows it).
    next_attempt: String,
    created: When,
}

impl DeliveryView {
    fn of(d: &WebhookDeliveryRow) -> DeliveryView {
        let last = d.responses.as_array().and_then(|r| r.last());
        let last_response = match last {
            None => "—".to_owned(),
            Some(r) => match (&r["status_code"], &r["error_message"], &r["error"]) {
                (Value::Number(code), _, _) => format!("HTTP {code}"),
                (_, Value::String(message), _) => message.clone(),
                (_, _, Value::String(class)) => class.clone(),
                _ => "—".to_owned(),
            },
        };
        DeliveryView {
            key: d.idempotency_key.clone(),
            trigger: d.trigger.clone(),
            status: d.status.as_str(),
            attempts: d.attempt_count,
            last_response,
            last_attempt: when(d.last_attempt_at),
            next_attempt: when(
                d.next_attempt_at
                    .filter(|_| d.status == DeliveryStatus::Pending),
            ),
            created: When(d.created_at),
        }
    }
}

/// The query of a subscription's page: the deliveries' filter and page.
#[derive(Default, Deserialize)]
struct DeliveriesQuery {
    cursor: Option<String>,
    page_size: Option<String>,
    status: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/webhook.html")]
struct WebhookPage {
    layout: Layout,
    subscription: WebhookSubscriptionRow,
    created: When,
    updated: When,
    /// The edit form: url, ticked triggers, active.
    url: String,
    triggers: Vec<TriggerBox>,
    is_active: bool,
    errors: FormErrors,
    deliveries: Vec<DeliveryView>,
    pager: Pager,
    status_filter: String,
    statuses: &'static [&'static str],
}

/// What the edit form shows: the subscription as stored, or what was posted.
struct EditForm {
    url: String,
    triggers: Vec<String>,
    is_active: bool,
}

async fn webhook_view(
    state: &AppState,
    signed: &Signed,
    id: &str,
    raw_query: Option<&str>,
    status: StatusCode,
    form: Option<EditForm>,
    errors: FormErrors,
) -> Response {
    let store = &*state.keeper.store;
    let subscription = match webhooks::get(store, signed.project_id(), id).await {
        Ok(s) => s,
        Err(e) => return signed.error(e.into()),
    };
    let query: DeliveriesQuery = match read_query(raw_query) {
        Ok(q) => q,
        Err(e) => return signed.error(e),
    };
    let filter = match webhooks::delivery_status(query.status.as_deref()) {
        Ok(f) => f,
        Err(e) => return signed.error(e.into()),
    };
    let params = ListParams {
        cursor: query.cursor,
        page_size: query.page_size,
    };
    let request = match params.page_request(List::WebhookDeliveries) {
        Ok(r) => r,
        Err(e) => return signed.error(e),
    };
    let page = match webhooks::deliveries(store, signed.project_id(), id, filter, &request).await {
        Ok(page) => page,
        Err(e) => return signed.error(e.into()),
    };
    let mut list_url = format!("/dashboard/webhooks/{id}");
    if let Some(f) = filter {
        list_url.push_str("?status=");
        list_url.push_str(f.as_str());
    }
    let listed = ListPage::of(
        List::WebhookDeliveries,
        &list_url,
        &request,
        &page,
        |d| (d.created_at, d.idempotency_key.clone()),
        DeliveryView::of,
    );
    let form = form.unwrap_or_else(|| EditForm {
        url: subscription.url.clone(),
        triggers: subscription.triggers.clone(),
        is_active: subscription.is_active,
    });
    render(
        status,
        WebhookPage {
            layout: signed.layout("webhooks"),
            created: When(subscription.created_at),
            updated: When(subscription.updated_at),
            subscription,
            url: form.url,
            triggers: trigger_boxes(&form.triggers),
            is_active: form.is_active,
            errors,
            pager: Pager::from(&listed),
            deliveries: listed.results,
            status_filter: filter.map(|f| f.as_str().to_owned()).unwrap_or_default(),
            statuses: &["pending", "success", "failure"],
        },
    )
}

async fn webhook_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    webhook_view(
        &state,
        &signed,
        &id,
        query.as_deref(),
        StatusCode::OK,
        None,
        FormErrors::none(),
    )
    .await
}

/// The edit form: every field the API's PATCH takes, as the form shows them (an
/// unticked box is sent as nothing).
async fn update_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Response {
    let Posted { signed, form } = posted;
    let change = SubscriptionChange {
        url: Some(form.text("url")),
        triggers: Some(form.all("triggers")),
        is_active: Some(form.has("is_active")),
    };
    let shown = EditForm {
        url: form.text("url"),
        triggers: form.all("triggers"),
        is_active: form.has("is_active"),
    };
    match webhooks::update(
        subscriptions(&state.keeper),
        signed.project_id(),
        &id,
        change,
    )
    .await
    {
        Ok(row) => see_other(&format!("/dashboard/webhooks/{}", row.id)),
        Err(webhooks::SubscriptionError::Invalid(fields)) => {
            let (status, errors) = refused(ApiError::invalid_fields(fields));
            webhook_view(&state, &signed, &id, None, status, Some(shown), errors).await
        }
        Err(e) => signed.error(e.into()),
    }
}

async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<super::NoFields>,
) -> Response {
    let signed = posted.signed;
    match webhooks::delete(&*state.keeper.store, signed.project_id(), &id).await {
        Ok(()) => see_other("/dashboard/webhooks"),
        Err(e) => signed.error(e.into()),
    }
}

/// What the API's resend does: the delivery goes back to pending, due now, with
/// the same idempotency key; the delivery worker makes the new attempt.
async fn resend_delivery(
    State(state): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    posted: Posted<super::NoFields>,
) -> Response {
    let signed = posted.signed;
    let store = &*state.keeper.store;
    if let Err(e) = webhooks::get(store, signed.project_id(), &id).await {
        return signed.error(e.into());
    }
    match webhooks::resend(store, signed.project_id(), &key).await {
        Ok(_) => see_other(&format!("/dashboard/webhooks/{id}#deliveries")),
        Err(e) => signed.error(e.into()),
    }
}

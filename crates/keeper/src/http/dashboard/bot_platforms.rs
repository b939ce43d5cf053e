//! Bot platforms: the URLs an Attendee or Recall bot asks for Zoom tokens, each
//! platform's call log, and the project's default ZAK user.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::webhooks::Fields;
use super::{read_query, Pager};
use super::{refused, render, see_other, FormErrors, Layout, Posted, Signed, When};
use crate::domain::bot_platforms::{self, BotPlatformChange, NewBotPlatform, Written};
use crate::http::bot_platforms::BotPlatformResponse;
use crate::http::error::ApiError;
use crate::http::pagination::{List, ListPage, ListParams};
use crate::http::AppState;
use crate::storage::{BotPlatformCallRow, BotPlatformRow, Platform};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/dashboard/bot-platforms",
            get(platforms_page).post(create_platform),
        )
        .route(
            "/dashboard/default-zak-user",
            get(back_to_platforms).post(set_default_zak_user),
        )
        .route(
            "/dashboard/bot-platforms/{id}",
            get(platform_page).post(update_platform),
        )
        .route(
            "/dashboard/bot-platforms/{id}/delete",
            post(delete_platform),
        )
}

/// The project's apps for a select: `(id, client_id)`, newest first.
pub(super) async fn app_choices(
    state: &AppState,
    signed: &Signed,
) -> Result<Vec<(String, String)>, ApiError> {
    Ok(super::project_apps(state, signed)
        .await?
        .into_iter()
        .map(|a| (a.id, a.client_id))
        .collect())
}

/// The value of an optional text field: blank is none.
fn given(text: String) -> Option<String> {
    (!text.trim().is_empty()).then_some(text)
}

// ---------------------------------------------------------------------------
// The list, the create form and the default ZAK user

/// What the create form shows.
#[derive(Default)]
struct CreateForm {
    platform: String,
    name: String,
    zoom_oauth_app_id: String,
    zak_user_id: String,
    onbehalf_metadata_key: String,
}

#[derive(Template)]
#[template(path = "dashboard/bot_platforms.html")]
struct PlatformsPage {
    layout: Layout,
    platforms: Vec<BotPlatformRow>,
    pager: Pager,
    apps: Vec<(String, String)>,
    form: CreateForm,
    errors: FormErrors,
    default_zak_user_id: String,
    zak_errors: FormErrors,
}

impl PlatformsPage {
    fn created(&self, p: &BotPlatformRow) -> When {
        When(p.created_at)
    }
}

#[allow(clippy::too_many_arguments)]
async fn platforms_view(
    state: &AppState,
    signed: &Signed,
    raw_query: Option<&str>,
    status: StatusCode,
    form: CreateForm,
    errors: FormErrors,
    zak_form: Option<String>,
    zak_errors: FormErrors,
) -> Response {
    let store = &*state.keeper.store;
    let params: ListParams = match read_query(raw_query) {
        Ok(p) => p,
        Err(e) => return signed.error(e),
    };
    let request = match params.page_request(List::BotPlatforms) {
        Ok(r) => r,
        Err(e) => return signed.error(e),
    };
    let page = match bot_platforms::list(store, signed.project_id(), &request).await {
        Ok(page) => page,
        Err(e) => return signed.error(e.into()),
    };
    let default_zak_user_id = match zak_form {
        Some(shown) => shown,
        None => match bot_platforms::default_zak_user(store, signed.project_id()).await {
            Ok(user) => user.unwrap_or_default(),
            Err(e) => return signed.error(e.into()),
        },
    };
    let apps = match app_choices(state, signed).await {
        Ok(apps) => apps,
        Err(e) => return signed.error(e),
    };
    let listed = ListPage::of(
        List::BotPlatforms,
        "/dashboard/bot-platforms",
        &request,
        &page,
        |p| (p.created_at, p.id.clone()),
        Clone::clone,
    );
    render(
        status,
        PlatformsPage {
            layout: signed.layout("bot_platforms"),
            pager: Pager::from(&listed),
            platforms: listed.results,
            apps,
            form,
            errors,
            default_zak_user_id,
            zak_errors,
        },
    )
}

async fn platforms_page(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    platforms_view(
        &state,
        &signed,
        query.as_deref(),
        StatusCode::OK,
        CreateForm::default(),
        FormErrors::none(),
        None,
        FormErrors::none(),
    )
    .await
}

async fn back_to_platforms() -> Response {
    see_other("/dashboard/bot-platforms")
}

#[derive(Deserialize)]
struct CreatePlatformForm {
    #[serde(default)]
    platform: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    verification_secret: String,
    #[serde(default)]
    zoom_oauth_app_id: String,
    #[serde(default)]
    zak_user_id: String,
    #[serde(default)]
    onbehalf_metadata_key: String,
}

async fn create_platform(
    State(state): State<AppState>,
    posted: Posted<CreatePlatformForm>,
) -> Response {
    let Posted { signed, form } = posted;
    let shown = CreateForm {
        platform: form.platform.clone(),
        name: form.name.clone(),
        zoom_oauth_app_id: form.zoom_oauth_app_id.clone(),
        zak_user_id: form.zak_user_id.clone(),
        onbehalf_metadata_key: form.onbehalf_metadata_key.clone(),
    };
    // The API's JSON has the platform as an enum; a form has it as text.
    let Some(platform) = Platform::parse(form.platform.trim()) else {
        let (status, errors) = refused(ApiError::field(
            "platform",
            "Choose the bot platform: attendee or recall.",
        ));
        return platforms_view(
            &state,
            &signed,
            None,
            status,
            shown,
            errors,
            None,
            FormErrors::none(),
        )
        .await;
    };
    let new = NewBotPlatform {
        platform,
        name: given(form.name),
        verification_secret: given(form.verification_secret).map(SecretString::from),
        zoom_oauth_app_id: given(form.zoom_oauth_app_id),
        zak_user_id: given(form.zak_user_id),
        onbehalf_metadata_key: given(form.onbehalf_metadata_key),
    };
    match bot_platforms::create(&state.keeper, signed.project_id(), new).await {
        Ok(written) if written.query_token.is_some() => {
            tracing::info!(platform_id = %written.row.id, "bot platform created in the dashboard");
            platform_view(
                &state,
                &signed,
                &written.row.id.clone(),
                None,
                StatusCode::CREATED,
                Some(written),
                None,
                FormErrors::none(),
            )
            .await
        }
        Ok(written) => see_other(&format!("/dashboard/bot-platforms/{}", written.row.id)),
        Err(e) => {
            let (status, errors) = refused(e.into());
            platforms_view(
                &state,
                &signed,
                None,
                status,
                shown,
                errors,
                None,
                FormErrors::none(),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct DefaultZakForm {
    #[serde(default)]
    default_zak_user_id: String,
}

/// The API's `PATCH /api/v1/project`: a blank field clears the user.
async fn set_default_zak_user(
    State(state): State<AppState>,
    posted: Posted<DefaultZakForm>,
) -> Response {
    let Posted { signed, form } = posted;
    let user = given(form.default_zak_user_id.clone());
    match bot_platforms::set_default_zak_user(
        &*state.keeper.store,
        signed.project_id(),
        user.as_deref(),
    )
    .await
    {
        Ok(_) => see_other("/dashboard/bot-platforms#default-zak-user"),
        Err(e) => {
            let (status, errors) = refused(e.into());
            platforms_view(
                &state,
                &signed,
                None,
                status,
                CreateForm::default(),
                FormErrors::none(),
                Some(form.default_zak_user_id),
                errors,
            )
            .await
        }
    }
}

// ---------------------------------------------------------------------------
// One platform: its URLs, edit, delete and call log

/// A callback URL to paste into the platform: `(element id, what it is, URL)`.
struct CallbackUrl {
    id: &'static str,
    label: &'static str,
    url: String,
}

fn callback_urls(shown: &BotPlatformResponse) -> Vec<CallbackUrl> {
    let urls = &shown.urls;
    [
        (
            "url-zoom-tokens",
            "callback_settings.zoom_tokens_url (Attendee)",
            &urls.zoom_tokens_url,
        ),
        ("url-zak", "zoom.zak_url (Recall)", &urls.zak_url),
        (
            "url-obf-token",
            "zoom.obf_token_url (Recall; add meeting_id=<meeting number>)",
            &urls.obf_token_url,
        ),
        (
            "url-join-token",
            "zoom.join_token_url (Recall; add meeting_id=<meeting number>)",
            &urls.join_token_url,
        ),
    ]
    .into_iter()
    .filter_map(|(id, label, url)| url.clone().map(|url| CallbackUrl { id, label, url }))
    .collect()
}

/// A call as the log shows it.
struct CallView {
    at: When,
    endpoint: String,
    status: i64,
    outcome: String,
    /// `ok` (minted), `partial` (some or none of several) or `error` (refused).
    outcome_class: &'static str,
    bot_id: String,
    meeting_id: String,
    minted: String,
    problems: String,
}

impl CallView {
    fn of(c: &BotPlatformCallRow) -> CallView {
        let texts = |v: &Value, f: &dyn Fn(&Value) -> Option<String>| {
            v.as_array()
                .map(|items| items.iter().filter_map(f).collect::<Vec<_>>().join("; "))
                .unwrap_or_default()
        };
        CallView {
            at: When(c.created_at),
            endpoint: c.endpoint.clone(),
            status: c.status,
            outcome_class: match c.outcome.as_str() {
                "minted" => "ok",
                "partial" | "none" => "partial",
                _ => "error",
            },
            outcome: c.outcome.clone(),
            bot_id: c.bot_id.clone().unwrap_or_default(),
            meeting_id: c.meeting_id.clone().unwrap_or_default(),
            minted: texts(&c.minted, &|t| t.as_str().map(str::to_owned)),
            problems: texts(&c.problems, &|p| {
                p["message"].as_str().map(|m| match p["token"].as_str() {
                    Some(token) => format!("{token}: {m}"),
                    None => m.to_owned(),
                })
            }),
        }
    }
}

/// What the edit form shows.
struct EditForm {
    name: String,
    zoom_oauth_app_id: String,
    zak_user_id: String,
    onbehalf_metadata_key: String,
}

#[derive(Template)]
#[template(path = "dashboard/bot_platform.html")]
struct PlatformPage {
    layout: Layout,
    platform: BotPlatformRow,
    shown: BotPlatformResponse,
    urls: Vec<CallbackUrl>,
    /// The query token this POST made, shown only in its answer.
    query_token: Option<String>,
    created: When,
    updated: When,
    apps: Vec<(String, String)>,
    form: EditForm,
    errors: FormErrors,
    calls: Vec<CallView>,
    pager: Pager,
}

impl PlatformPage {
    fn verification(&self) -> &'static str {
        match self.shown.verification {
            "attendee_signature" => {
                "Attendee's X-Webhook-Signature, with your Attendee project's webhook secret"
            }
            "standard_webhooks" => {
                "Standard Webhooks signatures, with your Recall workspace's verification secret"
            }
            _ => "the token query parameter of the URLs (the workspace has no verification secret)",
        }
    }

    fn is_recall(&self) -> bool {
        self.platform.platform == Platform::Recall
    }
}

#[allow(clippy::too_many_arguments)]
async fn platform_view(
    state: &AppState,
    signed: &Signed,
    id: &str,
    raw_query: Option<&str>,
    status: StatusCode,
    written: Option<Written>,
    form: Option<EditForm>,
    errors: FormErrors,
) -> Response {
    let store = &*state.keeper.store;
    let written = match written {
        Some(w) => w,
        None => match bot_platforms::get(store, signed.project_id(), id).await {
            Ok(row) => Written {
                row,
                query_token: None,
            },
            Err(e) => return signed.error(e.into()),
        },
    };
    let params: ListParams = match read_query(raw_query) {
        Ok(p) => p,
        Err(e) => return signed.error(e),
    };
    let request = match params.page_request(List::BotPlatformCalls) {
        Ok(r) => r,
        Err(e) => return signed.error(e),
    };
    let page = match bot_platforms::calls(store, signed.project_id(), id, &request).await {
        Ok(page) => page,
        Err(e) => return signed.error(e.into()),
    };
    let apps = match app_choices(state, signed).await {
        Ok(apps) => apps,
        Err(e) => return signed.error(e),
    };
    let listed = ListPage::of(
        List::BotPlatformCalls,
        &format!("/dashboard/bot-platforms/{id}"),
        &request,
        &page,
        |c| (c.created_at, c.id.clone()),
        CallView::of,
    );
    let shown = BotPlatformResponse::new(&written, &state.public_url);
    let row = written.row;
    let form = form.unwrap_or_else(|| EditForm {
        name: row.name.clone(),
        zoom_oauth_app_id: row.zoom_oauth_app_id.clone().unwrap_or_default(),
        zak_user_id: row.zak_user_id.clone().unwrap_or_default(),
        onbehalf_metadata_key: row.onbehalf_metadata_key.clone().unwrap_or_default(),
    });
    render(
        status,
        PlatformPage {
            layout: signed.layout("bot_platforms"),
            urls: callback_urls(&shown),
            query_token: shown.query_token.clone(),
            shown,
            created: When(row.created_at),
            updated: When(row.updated_at),
            platform: row,
            apps,
            form,
            errors,
            pager: Pager::from(&listed),
            calls: listed.results,
        },
    )
}

async fn platform_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    platform_view(
        &state,
        &signed,
        &id,
        query.as_deref(),
        StatusCode::OK,
        None,
        None,
        FormErrors::none(),
    )
    .await
}

/// The API's PATCH with every field of the form: a blank optional field clears
/// it, a blank secret leaves it alone, and "new_query_token" (Recall) replaces the
/// secret or token with a new token.
async fn update_platform(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Response {
    let Posted { signed, form } = posted;
    let verification_secret = if form.has("new_query_token") {
        Some(None)
    } else {
        given(form.text("verification_secret")).map(|s| Some(SecretString::from(s)))
    };
    let change = BotPlatformChange {
        name: Some(form.text("name")),
        verification_secret,
        zoom_oauth_app_id: Some(given(form.text("zoom_oauth_app_id"))),
        zak_user_id: Some(given(form.text("zak_user_id"))),
        onbehalf_metadata_key: Some(given(form.text("onbehalf_metadata_key"))),
    };
    let shown = EditForm {
        name: form.text("name"),
        zoom_oauth_app_id: form.text("zoom_oauth_app_id"),
        zak_user_id: form.text("zak_user_id"),
        onbehalf_metadata_key: form.text("onbehalf_metadata_key"),
    };
    match bot_platforms::update(&state.keeper, signed.project_id(), &id, change).await {
        Ok(written) if written.query_token.is_some() => {
            platform_view(
                &state,
                &signed,
                &id,
                None,
                StatusCode::OK,
                Some(written),
                None,
                FormErrors::none(),
            )
            .await
        }
        Ok(written) => see_other(&format!("/dashboard/bot-platforms/{}", written.row.id)),
        Err(bot_platforms::BotPlatformError::Invalid(fields)) => {
            let (status, errors) = refused(ApiError::invalid_fields(fields));
            platform_view(
                &state,
                &signed,
                &id,
                None,
                status,
                None,
                Some(shown),
                errors,
            )
            .await
        }
        Err(e) => signed.error(e.into()),
    }
}

async fn delete_platform(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<super::NoFields>,
) -> Response {
    let signed = posted.signed;
    match bot_platforms::delete(&*state.keeper.store, signed.project_id(), &id).await {
        Ok(()) => see_other("/dashboard/bot-platforms"),
        Err(e) => signed.error(e.into()),
    }
}

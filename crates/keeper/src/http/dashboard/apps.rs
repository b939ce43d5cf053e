//! Zoom OAuth apps: the list, "Add app" (Zoom checks the credentials first), an
//! app's page with its webhook and hosted-connect URLs, editing its secrets and
//! deleting it — through [`crate::domain::apps`], as the API does.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use secrecy::SecretString;
use serde::Deserialize;

use super::{
    read_query, refused, render, see_other, when, FormErrors, Layout, Pager, Posted, Signed, When,
};
use crate::domain::apps::{self, AppChange, NewApp};
use crate::http::apps::AppResponse;
use crate::http::error::ApiError;
use crate::http::pagination::{List, ListPage, ListParams};
use crate::http::AppState;
use crate::storage::{AppKind, AppRow};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard/apps", get(apps_page).post(create_app))
        .route("/dashboard/apps/{id}", get(app_page).post(update_app))
        .route("/dashboard/apps/{id}/delete", post(delete_app))
}

/// `client_secret` is where a person fixes a credential Zoom refused; the API names
/// no field for it, so its sentence goes next to that input.
fn credential_errors(e: ApiError) -> (StatusCode, FormErrors) {
    let credentials_refused = e.code() == "invalid_client_credentials";
    let (status, mut errors) = refused(e);
    if credentials_refused {
        if let Some(message) = errors.message.take() {
            errors
                .fields
                .insert("client_secret".to_owned(), vec![message]);
        }
    }
    (status, errors)
}

/// A non-empty form value; an empty input means "not given".
fn given(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

// ---------------------------------------------------------------------------
// The list and "Add app"

#[derive(Template)]
#[template(path = "dashboard/apps.html")]
struct AppsPage {
    layout: Layout,
    apps: Vec<AppRow>,
    pager: Pager,
    form: AppForm,
    errors: FormErrors,
}

impl AppsPage {
    fn created(&self, app: &AppRow) -> When {
        When(app.created_at)
    }
}

#[derive(Deserialize, Default)]
struct AppForm {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    webhook_secret: String,
    #[serde(default)]
    kind: String,
}

async fn apps_view(
    state: &AppState,
    signed: &Signed,
    params: &ListParams,
    status: StatusCode,
    form: AppForm,
    errors: FormErrors,
) -> Response {
    let request = match params.page_request(List::Apps) {
        Ok(request) => request,
        Err(e) => return signed.error(e),
    };
    let page = match apps::list(&*state.keeper.store, signed.project_id(), &request).await {
        Ok(page) => page,
        Err(e) => return signed.error(e.into()),
    };
    let links = ListPage::of(
        List::Apps,
        "/dashboard/apps",
        &request,
        &page,
        |a| (a.created_at, a.id.clone()),
        |_| (),
    );
    render(
        status,
        AppsPage {
            layout: signed.layout("apps"),
            pager: Pager::from(&links),
            apps: page.items,
            // Secrets typed into a refused form are not sent back to the browser.
            form: AppForm {
                client_secret: String::new(),
                webhook_secret: String::new(),
                ..form
            },
            errors,
        },
    )
}

async fn apps_page(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    let params: ListParams = match read_query(query.as_deref()) {
        Ok(params) => params,
        Err(e) => return signed.error(e),
    };
    apps_view(
        &state,
        &signed,
        &params,
        StatusCode::OK,
        AppForm::default(),
        FormErrors::none(),
    )
    .await
}

async fn create_app(State(state): State<AppState>, posted: Posted<AppForm>) -> Response {
    let Posted { signed, form } = posted;
    let kind = match form.kind.trim() {
        "" => Some(AppKind::UserLevel),
        other => AppKind::parse(other),
    };
    let Some(kind) = kind else {
        let (status, errors) = refused(ApiError::field(
            "kind",
            "Must be user_level or account_level.",
        ));
        return apps_view(
            &state,
            &signed,
            &ListParams::default(),
            status,
            form,
            errors,
        )
        .await;
    };
    let new = NewApp {
        client_id: form.client_id.clone(),
        client_secret: SecretString::from(form.client_secret.clone()),
        webhook_secret: given(form.webhook_secret.clone()).map(SecretString::from),
        kind,
    };
    match apps::create(&state.keeper, signed.project_id(), new).await {
        Ok(app) => {
            tracing::info!(app_id = %app.id, project_id = %signed.project.id, "Zoom app added in the dashboard");
            see_other(&format!("/dashboard/apps/{}", app.id))
        }
        Err(e) => {
            let (status, errors) = credential_errors(e.into());
            apps_view(
                &state,
                &signed,
                &ListParams::default(),
                status,
                form,
                errors,
            )
            .await
        }
    }
}

// ---------------------------------------------------------------------------
// One app

#[derive(Template)]
#[template(path = "dashboard/app.html")]
struct AppPage {
    layout: Layout,
    app: AppRow,
    /// The API's representation: the URLs and the webhook problem, as the API words them.
    shown: AppResponse,
    errors: FormErrors,
    /// Why the delete was refused.
    delete_error: Option<String>,
}

impl AppPage {
    fn created(&self) -> When {
        When(self.app.created_at)
    }
    fn updated(&self) -> When {
        When(self.app.updated_at)
    }
    fn last_verified(&self) -> String {
        when(self.app.last_verified_webhook_received_at)
    }
    fn last_unverified(&self) -> String {
        when(self.app.last_unverified_webhook_received_at)
    }
}

async fn app_view(
    state: &AppState,
    signed: &Signed,
    id: &str,
    status: StatusCode,
    errors: FormErrors,
    delete_error: Option<String>,
) -> Response {
    match apps::get(&*state.keeper.store, signed.project_id(), id).await {
        Ok(app) => render(
            status,
            AppPage {
                layout: signed.layout("apps"),
                shown: AppResponse::new(&app, &state.public_url),
                app,
                errors,
                delete_error,
            },
        ),
        Err(e) => signed.error(e.into()),
    }
}

async fn app_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    app_view(
        &state,
        &signed,
        &id,
        StatusCode::OK,
        FormErrors::none(),
        None,
    )
    .await
}

/// The API's PATCH fields; an empty input leaves its secret alone.
#[derive(Deserialize)]
struct AppEditForm {
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    webhook_secret: String,
    /// A checkbox: remove the webhook secret (the API's `webhook_secret: null`).
    #[serde(default)]
    remove_webhook_secret: String,
}

async fn update_app(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<AppEditForm>,
) -> Response {
    let Posted { signed, form } = posted;
    let webhook_secret = if !form.remove_webhook_secret.is_empty() {
        Some(None)
    } else {
        given(form.webhook_secret).map(|s| Some(SecretString::from(s)))
    };
    let change = AppChange {
        client_id: None,
        client_secret: given(form.client_secret).map(SecretString::from),
        webhook_secret,
    };
    match apps::update(&state.keeper, signed.project_id(), &id, change).await {
        Ok(app) => see_other(&format!("/dashboard/apps/{}", app.id)),
        Err(apps::AppError::NotFound) => signed.error(apps::AppError::NotFound.into()),
        Err(e) => {
            let (status, errors) = credential_errors(e.into());
            app_view(&state, &signed, &id, status, errors, None).await
        }
    }
}

async fn delete_app(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<super::NoFields>,
) -> Response {
    let signed = posted.signed;
    match apps::delete(&*state.keeper.store, signed.project_id(), &id).await {
        Ok(()) => {
            tracing::info!(app_id = %id, project_id = %signed.project.id, "Zoom app deleted in the dashboard");
            see_other("/dashboard/apps")
        }
        Err(e @ apps::AppError::HasConnections) => {
            let e = ApiError::from(e);
            let status = e.status();
            app_view(
                &state,
                &signed,
                &id,
                status,
                FormErrors::none(),
                Some(e.to_string()),
            )
            .await
        }
        Err(e) => signed.error(e.into()),
    }
}

//! Projects, operators and API keys.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{refused, render, see_other, when, FormErrors, Layout, Posted, Signed, When};
use crate::core::ids::IdKind;
use crate::domain::operators::{self, OperatorError};
use crate::domain::projects::{self, ProjectError};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::storage::{ApiKeyRow, OperatorRow};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/dashboard/projects",
            get(projects_page).post(create_project),
        )
        .route(
            "/dashboard/operators",
            get(operators_page).post(create_operator),
        )
        .route(
            "/dashboard/api-keys",
            get(api_keys_page).post(create_api_key),
        )
        .route("/dashboard/api-keys/{id}/disable", post(disable_api_key))
}

// ---------------------------------------------------------------------------
// Projects

#[derive(Template)]
#[template(path = "dashboard/projects.html")]
struct ProjectsPage {
    layout: Layout,
    projects: Vec<(String, String, When)>,
    name: String,
    errors: FormErrors,
}

fn projects_view(
    signed: &Signed,
    status: StatusCode,
    name: String,
    errors: FormErrors,
) -> Response {
    render(
        status,
        ProjectsPage {
            layout: signed.layout("projects"),
            projects: signed
                .projects
                .iter()
                .map(|p| (p.id.clone(), p.name.clone(), When(p.created_at)))
                .collect(),
            name,
            errors,
        },
    )
}

async fn projects_page(signed: Signed) -> Response {
    projects_view(&signed, StatusCode::OK, String::new(), FormErrors::none())
}

#[derive(Deserialize)]
struct ProjectForm {
    #[serde(default)]
    name: String,
}

impl From<ProjectError> for ApiError {
    fn from(e: ProjectError) -> ApiError {
        match e {
            ProjectError::InvalidName => ApiError::field(
                "name",
                "A project name must be 1 to 100 characters, not blank, without control characters.",
            ),
            ProjectError::NameTaken(name) => ApiError::Conflict {
                code: "project_name_taken",
                message: format!("A project named {name:?} already exists."),
            },
            ProjectError::NotFound(_) => ApiError::NotFound { what: "project" },
            ProjectError::Store(e) => e.into(),
        }
    }
}

async fn create_project(State(state): State<AppState>, posted: Posted<ProjectForm>) -> Response {
    let Posted { signed, form } = posted;
    let keeper = &state.keeper;
    match projects::create(&*keeper.store, &keeper.vault, &keeper.clock, &form.name).await {
        Ok(project) => {
            if let Err(e) = keeper
                .store
                .set_operator_session_project(&signed.session.token_hash, &project.id)
                .await
            {
                return signed.error(e.into());
            }
            see_other("/dashboard/api-keys")
        }
        Err(e) => {
            let (status, mut errors) = refused(e.into());
            if let Some(message) = errors.message.take().filter(|_| errors.fields.is_empty()) {
                errors.fields.insert("name".to_owned(), vec![message]);
            }
            projects_view(&signed, status, form.name, errors)
        }
    }
}

// ---------------------------------------------------------------------------
// Operators

#[derive(Template)]
#[template(path = "dashboard/operators.html")]
struct OperatorsPage {
    layout: Layout,
    operators: Vec<OperatorRow>,
    email: String,
    errors: FormErrors,
    /// The new operator and their generated password, shown once.
    created: Option<(String, String)>,
}

impl OperatorsPage {
    fn added_by(&self, operator: &OperatorRow) -> String {
        match &operator.created_by {
            None => "the command line".to_owned(),
            Some(id) => self
                .operators
                .iter()
                .find(|o| &o.id == id)
                .map_or_else(|| "a removed operator".to_owned(), |o| o.email.clone()),
        }
    }

    fn since(&self, operator: &OperatorRow) -> When {
        When(operator.created_at)
    }
}

async fn operators_view(
    state: &AppState,
    signed: &Signed,
    status: StatusCode,
    email: String,
    errors: FormErrors,
    created: Option<(String, String)>,
) -> Response {
    match state.keeper.store.list_operators().await {
        Ok(operators) => render(
            status,
            OperatorsPage {
                layout: signed.layout("operators"),
                operators,
                email,
                errors,
                created,
            },
        ),
        Err(e) => signed.error(e.into()),
    }
}

async fn operators_page(State(state): State<AppState>, signed: Signed) -> Response {
    operators_view(
        &state,
        &signed,
        StatusCode::OK,
        String::new(),
        FormErrors::none(),
        None,
    )
    .await
}

#[derive(Deserialize)]
struct OperatorForm {
    #[serde(default)]
    email: String,
    /// Empty: generate one and show it once.
    #[serde(default)]
    password: String,
}

async fn create_operator(State(state): State<AppState>, posted: Posted<OperatorForm>) -> Response {
    let Posted { signed, form } = posted;
    let keeper = &state.keeper;
    let password = (!form.password.is_empty()).then(|| SecretString::from(form.password));
    let created = operators::create(
        &*keeper.store,
        &keeper.clock,
        &form.email,
        password,
        Some(&signed.session.operator_id),
    )
    .await;
    match created {
        Ok(created) => {
            tracing::info!(
                operator_id = %created.operator.id,
                by = %signed.session.operator_id,
                "operator added"
            );
            let shown = created
                .generated_password
                .map(|p| p.expose_secret().to_owned())
                .unwrap_or_default();
            operators_view(
                &state,
                &signed,
                StatusCode::CREATED,
                String::new(),
                FormErrors::none(),
                Some((created.operator.email, shown)),
            )
            .await
        }
        Err(e) => {
            let e = match e {
                OperatorError::Invalid(fields) => ApiError::invalid_fields(fields),
                OperatorError::Store(e) => e.into(),
            };
            let (status, errors) = refused(e);
            operators_view(&state, &signed, status, form.email, errors, None).await
        }
    }
}

// ---------------------------------------------------------------------------
// API keys

#[derive(Template)]
#[template(path = "dashboard/api_keys.html")]
struct ApiKeysPage {
    layout: Layout,
    keys: Vec<ApiKeyRow>,
    name: String,
    errors: FormErrors,
    /// A key just created, shown only in this answer.
    created: Option<(String, String)>,
}

impl ApiKeysPage {
    fn created_at(&self, key: &ApiKeyRow) -> When {
        When(key.created_at)
    }

    fn last_used(&self, key: &ApiKeyRow) -> String {
        when(key.last_used_at)
    }

    fn disabled(&self, key: &ApiKeyRow) -> String {
        when(key.disabled_at)
    }
}

const MAX_KEY_NAME_CHARS: usize = 100;

async fn api_keys_view(
    state: &AppState,
    signed: &Signed,
    status: StatusCode,
    name: String,
    errors: FormErrors,
    created: Option<(String, String)>,
) -> Response {
    match state.keeper.store.list_api_keys(signed.project_id()).await {
        Ok(keys) => render(
            status,
            ApiKeysPage {
                layout: signed.layout("api_keys"),
                keys,
                name,
                errors,
                created,
            },
        ),
        Err(e) => signed.error(e.into()),
    }
}

async fn api_keys_page(State(state): State<AppState>, signed: Signed) -> Response {
    api_keys_view(
        &state,
        &signed,
        StatusCode::OK,
        String::new(),
        FormErrors::none(),
        None,
    )
    .await
}

#[derive(Deserialize)]
struct ApiKeyForm {
    #[serde(default)]
    name: String,
}

async fn create_api_key(State(state): State<AppState>, posted: Posted<ApiKeyForm>) -> Response {
    let Posted { signed, form } = posted;
    let name = form.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_KEY_NAME_CHARS
        || name.contains(char::is_control)
    {
        let (status, errors) = refused(ApiError::field(
            "name",
            format!(
                "Name the key (1 to {MAX_KEY_NAME_CHARS} characters, no control characters) so \
                 you can tell it apart."
            ),
        ));
        return api_keys_view(&state, &signed, status, form.name, errors, None).await;
    }
    let keeper = &state.keeper;
    match projects::create_api_key(&*keeper.store, &keeper.clock, &signed.project, name).await {
        Ok(key) => {
            tracing::info!(project_id = %signed.project.id, "API key created in the dashboard");
            api_keys_view(
                &state,
                &signed,
                StatusCode::CREATED,
                String::new(),
                FormErrors::none(),
                Some((name.to_owned(), key.expose_secret().to_owned())),
            )
            .await
        }
        Err(e) => signed.error(e.into()),
    }
}

async fn disable_api_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<super::NoFields>,
) -> Response {
    let signed = posted.signed;
    let keeper = &state.keeper;
    if !IdKind::ApiKey.matches(&id) {
        return signed.error(ApiError::NotFound { what: "API key" });
    }
    match keeper
        .store
        .disable_api_key(signed.project_id(), &id, keeper.clock.now())
        .await
    {
        Ok(true) => see_other("/dashboard/api-keys"),
        Ok(false) => signed.error(ApiError::NotFound { what: "API key" }),
        Err(e) => signed.error(e.into()),
    }
}

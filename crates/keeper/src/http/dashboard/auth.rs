//! Signing in and out, the home page and switching project.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{
    bare_error, cookie_value, render, safe_next, secure_cookies, see_other, Layout, Posted, Signed,
    SESSION_COOKIE,
};
use crate::domain::operators::{self, LoginError};
use crate::http::error::ApiError;
use crate::http::AppState;

/// The pre-session cookie that the sign-in form's CSRF token is derived from
/// (double submit: a page elsewhere can neither read it nor set it).
const LOGIN_COOKIE: &str = "zk_login";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard/", get(home))
        .route("/dashboard/login", get(login_page).post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/project", post(switch_project))
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    next: &'a str,
    email: &'a str,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

fn cookie(name: &str, value: &str, path: &str, secure: bool, same_site: &str) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite={same_site}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn expired_cookie(name: &str, path: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}=; Path={path}; HttpOnly; SameSite=Lax; Max-Age=0{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The sign-in form, with a fresh pre-session cookie when the browser has none.
fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    email: &str,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let (value, fresh) = match cookie_value(headers, LOGIN_COOKIE).filter(|v| v.len() == 43) {
        Some(v) => (v, false),
        None => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            (URL_SAFE_NO_PAD.encode(bytes), true)
        }
    };
    let csrf = operators::csrf_token(&value);
    let mut response = render(
        status,
        LoginPage {
            csrf: &csrf,
            next,
            email,
            error,
            notice,
        },
    );
    if fresh {
        response.headers_mut().append(
            header::SET_COOKIE,
            cookie(
                LOGIN_COOKIE,
                &value,
                "/dashboard/login",
                secure_cookies(state),
                "Strict",
            ),
        );
    }
    response
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    signed: Option<Signed>,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if signed.is_some() {
        return see_other(next);
    }
    let notice = query.signed_out.is_some().then_some("You have signed out.");
    login_form(&state, &headers, StatusCode::OK, next, "", None, notice)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bare_error(
            StatusCode::BAD_REQUEST,
            "Send the sign-in form from the sign-in page.",
        );
    };
    let next = safe_next(form.next.as_deref()).to_owned();
    let expected = cookie_value(&headers, LOGIN_COOKIE).map(|v| operators::csrf_token(&v));
    let csrf_ok = expected.is_some_and(|e| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            e.as_bytes(),
            form.csrf.as_bytes(),
        ))
    });
    if !csrf_ok {
        return login_form(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &next,
            &form.email,
            Some(
                "This sign-in form has expired or did not come from this dashboard. \
                 Try again."
                    .to_owned(),
            ),
            None,
        );
    }
    let keeper = &state.keeper;
    let password = SecretString::from(form.password);
    match operators::login(&*keeper.store, &keeper.clock, &form.email, password).await {
        Ok(new) => {
            let mut response = see_other(&next);
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                cookie(
                    SESSION_COOKIE,
                    new.token.expose_secret(),
                    "/dashboard",
                    secure_cookies(&state),
                    "Lax",
                ),
            );
            headers.append(
                header::SET_COOKIE,
                expired_cookie(LOGIN_COOKIE, "/dashboard/login", secure_cookies(&state)),
            );
            tracing::info!(operator_id = %new.session.operator_id, "operator signed in");
            response
        }
        Err(e @ LoginError::Invalid) => login_form(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &next,
            &form.email,
            Some(e.to_string()),
            None,
        ),
        Err(e @ LoginError::Throttled { retry_after_secs }) => {
            let mut response = login_form(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                &form.email,
                Some(e.to_string()),
                None,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Err(e @ LoginError::Busy) => {
            let mut response = login_form(
                &state,
                &headers,
                StatusCode::SERVICE_UNAVAILABLE,
                &next,
                &form.email,
                Some(e.to_string()),
                None,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(5u32));
            response
        }
        Err(LoginError::Store(e)) => {
            tracing::error!(error = %e, "signing in failed");
            login_form(
                &state,
                &headers,
                StatusCode::SERVICE_UNAVAILABLE,
                &next,
                &form.email,
                Some("Signing in failed on the server; try again shortly.".to_owned()),
                None,
            )
        }
    }
}

async fn logout(State(state): State<AppState>, posted: Posted<super::NoFields>) -> Response {
    let keeper = &state.keeper;
    if let Err(e) = operators::logout(&*keeper.store, &posted.signed.session).await {
        return posted.signed.error(ApiError::from(e));
    }
    let mut response = see_other("/dashboard/login?signed_out=1");
    response.headers_mut().append(
        header::SET_COOKIE,
        expired_cookie(SESSION_COOKIE, "/dashboard", secure_cookies(&state)),
    );
    response
}

#[derive(Deserialize)]
struct SwitchForm {
    project_id: String,
    #[serde(default)]
    back: Option<String>,
}

async fn switch_project(State(state): State<AppState>, posted: Posted<SwitchForm>) -> Response {
    let Posted { signed, form } = posted;
    if !signed.projects.iter().any(|p| p.id == form.project_id) {
        return signed.error(ApiError::NotFound { what: "project" });
    }
    if let Err(e) = state
        .keeper
        .store
        .set_operator_session_project(&signed.session.token_hash, &form.project_id)
        .await
    {
        return signed.error(e.into());
    }
    // Another project's object pages would be 404s: go back to the section's list.
    let back = safe_next(form.back.as_deref());
    let section = back
        .trim_start_matches("/dashboard/")
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    see_other(&format!("/dashboard/{section}"))
}

#[derive(Template)]
#[template(path = "dashboard/home.html")]
struct HomePage {
    layout: Layout,
    apps: i64,
    connections: Vec<(String, i64)>,
}

async fn home(State(state): State<AppState>, signed: Signed) -> Response {
    let store = &state.keeper.store;
    let apps = match store.count_apps(signed.project_id()).await {
        Ok(n) => n,
        Err(e) => return signed.error(e.into()),
    };
    let connections = match store.count_connections_by_state(signed.project_id()).await {
        Ok(counts) => counts,
        Err(e) => return signed.error(e.into()),
    };
    render(
        StatusCode::OK,
        HomePage {
            layout: signed.layout("home"),
            apps,
            connections,
        },
    )
}

//! The dashboard over plain HTTP, as a browser without JavaScript uses it: a
//! signed-in session (its cookie), the CSRF token scraped from the pages, forms
//! posted as `application/x-www-form-urlencoded`, redirects not followed (tests
//! look at them).

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};

use crate::app::{Answer, TestApp};

/// The password [`TestApp::dashboard`] gives its operator.
pub const PASSWORD: &str = "correct horse battery staple";

/// A signed-in browser session (a clone is another tab of it).
#[derive(Clone)]
pub struct Dashboard<'a> {
    pub app: &'a TestApp,
    client: reqwest::Client,
    /// `zk_session=…`
    pub cookie: String,
    /// The session's CSRF token, as the pages carry it.
    pub csrf: String,
    /// The project the session shows, as every form names it.
    pub project: String,
}

/// The value of the first `name="csrf"` input in `html`.
pub fn csrf_in(html: &str) -> Option<String> {
    input_value(html, "csrf")
}

/// The value of the first input named `name` in `html`.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker)? + marker.len();
    let rest = &html[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The `Set-Cookie` header of `answer` that sets `name`.
pub fn set_cookie<'h>(answer: &'h Answer, name: &str) -> Option<&'h str> {
    answer
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// `name=value` of a `Set-Cookie` header.
fn cookie_pair(header: &str) -> String {
    header.split(';').next().unwrap_or_default().to_owned()
}

/// `path` at the address the app listens on.
fn at(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.listen_url)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Signing in as a browser does: the form (and its pre-session cookie), then the
/// POST. Returns the answer to the POST and the pre-session cookie.
pub async fn sign_in(app: &TestApp, email: &str, password: &str) -> Answer {
    let client = client();
    let form = Answer::read(
        client
            .get(at(app, "/dashboard/login"))
            .send()
            .await
            .expect("login page"),
    )
    .await;
    assert_eq!(form.status, 200, "{}", form.text);
    let login_cookie = set_cookie(&form, "zk_login").map(cookie_pair);
    let csrf = csrf_in(&form.text).expect("the sign-in form has a CSRF token");
    let mut request = client.post(at(app, "/dashboard/login")).form(&[
        ("csrf", csrf.as_str()),
        ("email", email),
        ("password", password),
    ]);
    if let Some(cookie) = login_cookie {
        request = request.header(COOKIE, cookie);
    }
    Answer::read(request.send().await.expect("login")).await
}

impl TestApp {
    /// Adds an operator with `password` (through the same function as the CLI).
    pub async fn operator(&self, email: &str, password: &str) {
        keeper::operators::create(
            &*self.keeper.store,
            &self.keeper.clock,
            email,
            Some(secrecy::SecretString::from(password.to_owned())),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("operator {email}: {e:?}"));
    }

    /// A new operator `ops@example.com`, signed in, looking at this app's project.
    pub async fn dashboard(&self) -> Dashboard<'_> {
        self.operator("ops@example.com", PASSWORD).await;
        let mut dashboard = self.dashboard_as("ops@example.com", PASSWORD).await;
        let switched = dashboard
            .post(
                "/dashboard/project",
                &[("project_id", self.project_id.as_str())],
            )
            .await;
        assert_eq!(switched.status, 303, "{}", switched.text);
        dashboard.project = self.project_id.clone();
        dashboard
    }

    /// A session of an existing operator.
    pub async fn dashboard_as(&self, email: &str, password: &str) -> Dashboard<'_> {
        let signed_in = sign_in(self, email, password).await;
        assert_eq!(signed_in.status, 303, "sign-in: {}", signed_in.text);
        let cookie = cookie_pair(set_cookie(&signed_in, "zk_session").expect("a session cookie"));
        let mut dashboard = Dashboard {
            app: self,
            client: client(),
            cookie,
            csrf: String::new(),
            project: String::new(),
        };
        let home = dashboard.get("/dashboard/").await;
        assert_eq!(home.status, 200, "{}", home.text);
        dashboard.csrf = csrf_in(&home.text).expect("pages carry the CSRF token");
        dashboard.project = input_value(&home.text, "project").expect("forms name their project");
        dashboard
    }
}

impl Dashboard<'_> {
    pub async fn get(&self, path: &str) -> Answer {
        Answer::read(
            self.client
                .get(at(self.app, path))
                .header(COOKIE, &self.cookie)
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    /// A GET as the page's own script makes it to refresh a live region.
    pub async fn refresh(&self, path: &str) -> Answer {
        Answer::read(
            self.client
                .get(at(self.app, path))
                .header(COOKIE, &self.cookie)
                .header("x-zoomkeeper-refresh", "1")
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    /// Posts a form with the session's CSRF token and project, as its pages make them.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut all = vec![
            ("csrf", self.csrf.as_str()),
            ("project", self.project.as_str()),
        ];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Posts exactly `fields` (no CSRF token unless among them).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        Answer::read(
            self.client
                .post(at(self.app, path))
                .header(COOKIE, &self.cookie)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(fields).expect("form"))
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// Where a redirect answer points.
    pub fn location(answer: &Answer) -> &str {
        answer
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

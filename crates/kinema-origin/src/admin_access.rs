//! The admin tokens and signing keys, over HTTP, for the web UI's admin
//! pages: what `kinema tokens` and `kinema keys` do on the command line.
//!
//! ```text
//! GET    /api/admin-tokens                     → {"tokens": [{name, scope, created_at, created_at_unix}]}
//! POST   /api/admin-tokens?name=N&scope=S      → 201 {"token": {…}, "secret": "kt_…"} (shown once)
//! DELETE /api/admin-tokens/{name}              → 204
//! GET    /api/keys                             → {"keys": [{id, created_at, created_at_unix, retired, signing}]}
//! POST   /api/keys                             → 201 {"key": {…}}
//! POST   /api/keys/{id}/retire                 → {"key": {…}}
//! ```
//!
//! Every one needs a token of scope `admin`: they grant or withdraw
//! rights. A signing key's secret never leaves the server, only its id,
//! date and state; an admin token's secret is answered once, to whoever
//! created it, and only its hash is kept. The last admin token cannot be
//! revoked here (nobody could sign in to make another). Parameters travel
//! in the query string, bounded like every other; a body is not read.
//!
//! Each change reads the file (`kinema keys`/`kinema tokens` may have
//! changed it), applies, saves it atomically and serves the result at
//! once, so no SIGHUP is needed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use kinema_auth::admin::AdminToken;
use kinema_auth::{AdminTokensError, Key, KeyRingError, Scope};
use kinema_http::{ResponseBody, respond};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use crate::access::{Access, AccessError};

pub const TOKENS_PATH: &str = "/api/admin-tokens";
pub const KEYS_PATH: &str = "/api/keys";
/// Longest query string accepted, bytes.
const MAX_QUERY_BYTES: usize = 512;

type HttpResponse = http::Response<ResponseBody>;

/// Whether `path` is one this module answers.
pub fn answers(path: &str) -> bool {
    [TOKENS_PATH, KEYS_PATH]
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")))
}

/// Answers a request for a path [`answers`] accepts, after checking its
/// token has scope `admin`.
pub async fn answer(access: &Access, request: http::request::Parts) -> HttpResponse {
    if let Err(refusal) = authorize_admin(access, &request.method, &request.headers) {
        return *refusal;
    }
    let path = request.uri.path();
    let query = request.uri.query().unwrap_or("");
    let method = match request.method {
        Method::HEAD => Method::GET,
        ref method => method.clone(),
    };
    let (collection, rest) = if let Some(rest) = path.strip_prefix(TOKENS_PATH) {
        ("tokens", rest)
    } else {
        ("keys", path.strip_prefix(KEYS_PATH).unwrap_or(""))
    };
    let segments: Vec<&str> = rest.split('/').filter(|part| !part.is_empty()).collect();
    let mut response = match (collection, segments.as_slice(), &method) {
        ("tokens", [], &Method::GET) => list_tokens(access),
        ("tokens", [], &Method::POST) => match parse_query(query, &["name", "scope"]) {
            Ok(parameters) => create_token(access, parameters).await,
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        ("tokens", [], _) => method_not_allowed("GET, POST"),
        ("tokens", [name], &Method::DELETE) => match decode(name) {
            Ok(name) => revoke_token(access, name).await,
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        ("tokens", [_], _) => method_not_allowed("DELETE"),
        ("keys", [], &Method::GET) => list_keys(access),
        ("keys", [], &Method::POST) => create_key(access).await,
        ("keys", [], _) => method_not_allowed("GET, POST"),
        ("keys", [id, "retire"], &Method::POST) => match decode(id) {
            Ok(id) => retire_key(access, id).await,
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        ("keys", [_, "retire"], _) => method_not_allowed("POST"),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no api endpoint {method} {path}"),
        ),
    };
    if request.method == Method::HEAD {
        *response.body_mut() = ResponseBody::Empty;
    }
    response
}

fn authorize_admin(
    access: &Access,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), Box<HttpResponse>> {
    let scope = access.authorize_api(method, headers)?;
    if scope.allows(Scope::Admin) {
        return Ok(());
    }
    let mut response = respond::json(
        StatusCode::FORBIDDEN,
        &json!({"error": "insufficient_scope"}),
        HeaderMap::new(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"insufficient_scope\", scope=\"admin\""),
    );
    Err(Box::new(response))
}

fn list_tokens(access: &Access) -> HttpResponse {
    let tokens: Vec<Value> = access.tokens().tokens().iter().map(token_json).collect();
    ok(StatusCode::OK, json!({ "tokens": tokens }))
}

async fn create_token(access: &Access, parameters: Vec<(String, String)>) -> HttpResponse {
    let get = |key: &str| {
        parameters
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
    };
    let Some(name) = get("name").filter(|name| !name.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "name is missing; name the token");
    };
    let scope = match get("scope").unwrap_or_default().parse::<Scope>() {
        Ok(scope) => scope,
        Err(refused) => {
            return error(StatusCode::BAD_REQUEST, &format!("scope: {refused}"));
        }
    };
    let created = access
        .edit_tokens(move |tokens| {
            let secret = tokens.issue(&name, scope, SystemTime::now())?;
            let token = tokens
                .tokens()
                .iter()
                .find(|token| token.name == name)
                .map(token_json)
                .unwrap_or(Value::Null);
            Ok((token, secret))
        })
        .await;
    match created {
        Ok((token, secret)) => ok(
            StatusCode::CREATED,
            json!({ "token": token, "secret": secret }),
        ),
        Err(refused) => change_error(refused),
    }
}

async fn revoke_token(access: &Access, name: String) -> HttpResponse {
    let revoked = access
        .edit_tokens(move |tokens| {
            let admins = tokens
                .tokens()
                .iter()
                .filter(|token| token.scope == Scope::Admin)
                .count();
            let target = tokens.tokens().iter().find(|token| token.name == name);
            if target.is_some_and(|token| token.scope == Scope::Admin) && admins == 1 {
                return Err(AccessError::Refused(format!(
                    "{name:?} is the last admin token; create another admin token before revoking it"
                )));
            }
            tokens.revoke(&name)?;
            Ok(())
        })
        .await;
    match revoked {
        Ok(()) => {
            let mut response = http::Response::new(ResponseBody::Empty);
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(refused) => change_error(refused),
    }
}

fn list_keys(access: &Access) -> HttpResponse {
    let ring = access.keys();
    let signing = ring.signing_key().map(|key| key.id().as_str().to_string());
    let keys: Vec<Value> = ring
        .keys()
        .iter()
        .map(|key| key_json(key, signing.as_deref()))
        .collect();
    ok(StatusCode::OK, json!({ "keys": keys }))
}

async fn create_key(access: &Access) -> HttpResponse {
    let created = access
        .edit_keys(|ring| {
            let id = ring
                .add_new_key(SystemTime::now())
                .id()
                .as_str()
                .to_string();
            let signing = ring.signing_key().map(|key| key.id().as_str().to_string());
            let key = ring.keys().iter().find(|key| key.id().as_str() == id);
            Ok(key.map(|key| key_json(key, signing.as_deref())))
        })
        .await;
    match created {
        Ok(key) => ok(StatusCode::CREATED, json!({ "key": key })),
        Err(refused) => change_error(refused),
    }
}

async fn retire_key(access: &Access, id: String) -> HttpResponse {
    let retired = access
        .edit_keys(move |ring| {
            ring.retire(&id)?;
            let signing = ring.signing_key().map(|key| key.id().as_str().to_string());
            let key = ring.keys().iter().find(|key| key.id().as_str() == id);
            Ok(key.map(|key| key_json(key, signing.as_deref())))
        })
        .await;
    match retired {
        Ok(key) => ok(StatusCode::OK, json!({ "key": key })),
        Err(refused) => change_error(refused),
    }
}

fn token_json(token: &AdminToken) -> Value {
    json!({
        "name": token.name,
        "scope": token.scope.as_str(),
        "created_at": rfc3339(token.created),
        "created_at_unix": unix(token.created),
    })
}

/// Id, date and state only: the secret stays on the server.
fn key_json(key: &Key, signing: Option<&str>) -> Value {
    json!({
        "id": key.id().as_str(),
        "created_at": rfc3339(key.created()),
        "created_at_unix": unix(key.created()),
        "retired": key.is_retired(),
        "signing": signing == Some(key.id().as_str()),
    })
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix(time))).to_string()
}

/// The status a failed change is answered with, and a sentence that says
/// nothing of the server's files.
fn change_error(refused: AccessError) -> HttpResponse {
    let (status, message) = match &refused {
        AccessError::Refused(message) => (StatusCode::CONFLICT, message.clone()),
        AccessError::Tokens(AdminTokensError::NoSuchToken(name)) => {
            (StatusCode::NOT_FOUND, format!("no token named {name:?}"))
        }
        AccessError::Tokens(AdminTokensError::DuplicateName(name)) => (
            StatusCode::CONFLICT,
            format!("a token named {name:?} already exists; pick another name or revoke it first"),
        ),
        AccessError::Tokens(error @ AdminTokensError::BadName(_)) => {
            (StatusCode::BAD_REQUEST, format!("name: {error}"))
        }
        AccessError::Keys(KeyRingError::NoSuchKey(id)) => (
            StatusCode::NOT_FOUND,
            format!("no key {id:?} in the key ring"),
        ),
        _ => {
            tracing::error!(error = %refused, "cannot change the key ring or the admin tokens");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the change could not be saved; see the server log".to_string(),
            )
        }
    };
    error(status, &message)
}

fn parse_query(raw: &str, known: &[&str]) -> Result<Vec<(String, String)>, String> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(format!(
            "the query string is longer than {MAX_QUERY_BYTES} bytes"
        ));
    }
    let mut parameters = Vec::new();
    for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&key) {
            return Err(format!(
                "unknown parameter {key:?}; use {}",
                known.join(", ")
            ));
        }
        parameters.push((key.to_string(), decode(value)?));
    }
    Ok(parameters)
}

fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "not UTF-8 once percent-decoded".to_string())
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn ok(status: StatusCode, value: Value) -> HttpResponse {
    respond::json(status, &value, HeaderMap::new())
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    respond::json_error(status, message, HeaderMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        assert!(answers("/api/admin-tokens"));
        assert!(answers("/api/admin-tokens/ci"));
        assert!(answers("/api/keys/k1/retire"));
        assert!(!answers("/api/keysmith"));
        assert!(!answers("/api/tokens"));
        assert_eq!(
            parse_query("name=a+b&scope=read", &["name", "scope"]).unwrap(),
            vec![
                ("name".to_string(), "a b".to_string()),
                ("scope".to_string(), "read".to_string())
            ]
        );
        assert!(
            parse_query("owner=x", &["name"])
                .unwrap_err()
                .contains("unknown parameter")
        );
        assert!(parse_query(&"a".repeat(600), &["name"]).is_err());
    }
}

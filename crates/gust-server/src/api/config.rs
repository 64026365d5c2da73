//! `/api/v2/config`: the server's effective configuration (Airflow's `get_config` and
//! `get_config_value`), as JSON or as `gust.toml`-like text. Answered only when the
//! administrator chose to expose it (`[api] expose_config`, as Airflow's rule); sensitive values
//! are never held here, only their placeholder, [`HIDDEN`].
//!
//! The server does not read configuration itself: the binary hands it the sections it loaded,
//! already masked, through [`AppState::with_exposed_config`].

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::{Params, PathParams};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What a sensitive value is shown as (Airflow's words).
pub const HIDDEN: &str = "< hidden >";

/// The configuration endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_config))
        .routes(routes!(get_config_value))
}

/// The configuration a server may show: sections of options in the order they were loaded,
/// every value as text, sensitive ones already replaced by [`HIDDEN`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExposedConfig {
    /// `(section, [(option, value)])`.
    pub sections: Vec<(String, Vec<(String, String)>)>,
}

/// One option (Airflow's `ConfigOption`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigOption {
    pub key: String,
    pub value: String,
}

/// One section (Airflow's `ConfigSection`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigSection {
    pub name: String,
    pub options: Vec<ConfigOption>,
}

/// Sections of options (Airflow's `Config`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Config {
    pub sections: Vec<ConfigSection>,
}

impl Config {
    /// Airflow's text form: `[section]`, then `key = value` lines, sections apart by a blank
    /// line.
    fn text(&self) -> String {
        self.sections
            .iter()
            .map(|section| {
                let mut text = format!("[{}]\n", section.name);
                let lines: Vec<String> = section
                    .options
                    .iter()
                    .map(|o| format!("{} = {}", o.key, o.value))
                    .collect();
                text.push_str(&lines.join("\n"));
                text.push('\n');
                text
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// How the caller wants the answer (Airflow reads the first `Accept` value's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
}

fn format_of(headers: &HeaderMap) -> ApiResult<Format> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    if accept.starts_with("*/*") || accept.starts_with("application/json") {
        Ok(Format::Json)
    } else if accept.starts_with("text/plain") {
        Ok(Format::Text)
    } else {
        Err(ApiError::NotAcceptable(
            "Only application/json or text/plain is supported".into(),
        ))
    }
}

fn answer(config: Config, format: Format) -> Response {
    match format {
        Format::Json => Json(config).into_response(),
        Format::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            config.text(),
        )
            .into_response(),
    }
}

/// The configuration, or Airflow's 403 when it is not exposed.
fn exposed(state: &AppState) -> ApiResult<&ExposedConfig> {
    state.exposed_config().ok_or_else(|| {
        ApiError::Refused(
            "Your Airflow administrator chose not to expose the configuration, most likely for security reasons."
                .into(),
        )
    })
}

/// `GET /config` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigQuery {
    /// Only this section.
    pub section: Option<String>,
}

/// Get the configuration: every section, or one, as JSON or (`Accept: text/plain`) text.
#[utoipa::path(get, path = "/api/v2/config", tag = "Config", params(ConfigQuery),
    responses((status = 200, description = "The configuration, as JSON or as text", content((Config = "application/json"), (String = "text/plain"))), (status = 401), (status = 403), (status = 404), (status = 406)))]
async fn get_config(
    State(state): State<AppState>,
    Params(query): Params<ConfigQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let format = format_of(&headers)?;
    let config = exposed(&state)?;
    let wanted = query.section.as_deref().filter(|s| !s.is_empty());
    if let Some(section) = wanted
        && !config.sections.iter().any(|(name, _)| name == section)
    {
        return Err(ApiError::NotFound(format!("Section {section} not found.")));
    }
    let sections = config
        .sections
        .iter()
        .filter(|(name, _)| wanted.is_none_or(|w| w == name))
        .map(|(name, options)| ConfigSection {
            name: name.clone(),
            options: options
                .iter()
                .map(|(key, value)| ConfigOption {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        })
        .collect();
    Ok(answer(Config { sections }, format))
}

/// Get one option's value (sensitive ones as `< hidden >`), named as the caller named it.
#[utoipa::path(get, path = "/api/v2/config/section/{section}/option/{option}", tag = "Config",
    params(("section" = String, Path), ("option" = String, Path)),
    responses((status = 200, description = "The configuration, as JSON or as text", content((Config = "application/json"), (String = "text/plain"))), (status = 401), (status = 403), (status = 404), (status = 406)))]
async fn get_config_value(
    State(state): State<AppState>,
    PathParams((section, option)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let format = format_of(&headers)?;
    let config = exposed(&state)?;
    // Airflow's configuration parser reads names in any case.
    let value = config
        .sections
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&section))
        .and_then(|(_, options)| {
            options
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(&option))
        })
        .map(|(_, value)| value.clone())
        .ok_or_else(|| ApiError::NotFound(format!("Option [{section}/{option}] not found.")))?;
    let config = Config {
        sections: vec![ConfigSection {
            name: section,
            options: vec![ConfigOption { key: option, value }],
        }],
    };
    Ok(answer(config, format))
}

#[cfg(test)]
mod tests {
    use super::{Config, ConfigOption, ConfigSection};

    #[test]
    fn the_text_form_is_airflows() {
        let option = |key: &str, value: &str| ConfigOption {
            key: key.into(),
            value: value.into(),
        };
        let config = Config {
            sections: vec![
                ConfigSection {
                    name: "core".into(),
                    options: vec![option("dags_folder", "/d"), option("parallelism", "32")],
                },
                ConfigSection {
                    name: "api".into(),
                    options: vec![option("port", "8080")],
                },
            ],
        };
        assert_eq!(
            config.text(),
            "[core]\ndags_folder = /d\nparallelism = 32\n\n[api]\nport = 8080\n"
        );
    }
}

//! Airflow's connection URI form: `TYPE://LOGIN:PASSWORD@HOST:PORT/SCHEMA?KEY=VALUE`, where the
//! type's `-` stands for `_` (URI schemes cannot hold underscores), login and password are
//! percent-encoded, and query parameters become the extra's JSON object.

use anyhow::Context;
use gust_store::{Connection, Secret};

/// Reads a connection URI into a connection named `conn_id`. Errors never echo the URI, which
/// holds a password.
pub fn parse(conn_id: &str, uri: &str) -> anyhow::Result<Connection> {
    // Airflow accepts credentials without a host (`aws://KEY:SECRET@/?region_name=x`), which URI
    // parsers refuse; such a URI is read with a stand-in host that is then dropped.
    const NO_HOST: &str = "no-host.invalid";
    let parsed = url::Url::parse(uri)
        .or_else(|_| url::Url::parse(&uri.replacen("@/", &format!("@{NO_HOST}/"), 1)))
        .ok()
        .context("--conn-uri is not a URI of the form TYPE://LOGIN:PASSWORD@HOST:PORT/SCHEMA")?;
    let decode = |text: &str| -> anyhow::Result<Option<String>> {
        if text.is_empty() {
            return Ok(None);
        }
        let decoded = percent_decode(text)
            .context("--conn-uri has invalid percent-encoding in its login or password")?;
        Ok(Some(decoded))
    };
    let schema = parsed.path().trim_start_matches('/');
    let extra: serde_json::Map<String, serde_json::Value> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    Ok(Connection {
        conn_id: conn_id.to_owned(),
        conn_type: parsed.scheme().replace('-', "_"),
        host: parsed
            .host_str()
            .filter(|h| !h.is_empty() && *h != NO_HOST)
            .map(|h| percent_decode(h).unwrap_or_else(|| h.to_owned())),
        login: decode(parsed.username())?,
        schema: (!schema.is_empty())
            .then(|| percent_decode(schema).unwrap_or_else(|| schema.to_owned())),
        port: parsed.port().map(i32::from),
        password: decode(parsed.password().unwrap_or_default())?.map(Secret::new),
        extra: (!extra.is_empty())
            .then(|| Secret::new(serde_json::Value::Object(extra).to_string())),
        description: None,
    })
}

fn percent_decode(text: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_an_airflow_uri_is_read() {
        let conn = parse("warehouse", "google-cloud-platform://etl%40corp:p%40ss%2Bw@db.example:6432/analytics?sslmode=require&region=eu")
            .expect("a valid URI");
        assert_eq!(conn.conn_type, "google_cloud_platform");
        assert_eq!(conn.login.as_deref(), Some("etl@corp"));
        assert_eq!(conn.password.as_ref().map(Secret::expose), Some("p@ss+w"));
        assert_eq!(conn.host.as_deref(), Some("db.example"));
        assert_eq!(conn.port, Some(6432));
        assert_eq!(conn.schema.as_deref(), Some("analytics"));
        let extra: serde_json::Value =
            serde_json::from_str(conn.extra.as_ref().expect("extra").expose()).expect("JSON");
        assert_eq!(
            extra,
            serde_json::json!({"sslmode": "require", "region": "eu"})
        );
    }

    #[test]
    fn credentials_without_a_host_are_read() {
        let conn = parse("s3", "aws://AKIA:s3cr%2Ft@/?region_name=eu-west-1").expect("valid");
        assert_eq!((conn.login.as_deref(), conn.host), (Some("AKIA"), None));
        assert_eq!(conn.password.as_ref().map(Secret::expose), Some("s3cr/t"));
    }

    #[test]
    fn a_bare_uri_has_only_a_type() {
        let conn = parse("k8s", "kubernetes://").expect("valid");
        assert_eq!(
            (conn.conn_type.as_str(), conn.host, conn.password),
            ("kubernetes", None, None)
        );
    }

    #[test]
    fn a_bad_uri_is_refused_without_echoing_it() {
        let err = parse("x", "not a uri with s3cret")
            .expect_err("invalid")
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}

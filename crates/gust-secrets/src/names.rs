//! Which names hold secrets: a variable's key, a key of a connection's `extra`, an environment
//! variable's name, an argument's key. Airflow's `should_hide_value_for_key`: the name is
//! lowercased, runs of other characters than letters, digits and `_` read as one `_` (so
//! `API-Key` is `api_key`), and it is sensitive when any sensitive field occurs within it.
//! With `[core] hide_sensitive_var_conn_fields` off ([`SensitiveNames::hiding`]), no name is
//! sensitive, as Airflow's `should_hide_value_for_key` then answers false for every name.

/// Airflow's `DEFAULT_SENSITIVE_FIELDS`: always sensitive, whatever the configuration adds.
pub const DEFAULT_SENSITIVE_FIELDS: &[&str] = &[
    "access_key",
    "access_token",
    "api_key",
    "apikey",
    "auth_header",
    "authorization",
    "bearer",
    "connection_string",
    "dsn",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "proxy",
    "proxy_password",
    "proxies",
    "secret",
    "service_account",
    "service_key",
    "token",
    "keyfile_dict",
    "webhook_url",
];

/// The sensitive fields in force: Airflow's defaults and those `[core] sensitive_var_conn_names`
/// adds; and whether names hide values at all (`[core] hide_sensitive_var_conn_fields`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveNames {
    fields: Vec<String>,
    hide: bool,
}

impl Default for SensitiveNames {
    /// Airflow's defaults only, hiding (`hide_sensitive_var_conn_fields = true`, Airflow's
    /// default).
    fn default() -> Self {
        Self {
            fields: DEFAULT_SENSITIVE_FIELDS
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
            hide: true,
        }
    }
}

impl SensitiveNames {
    /// The defaults plus `extra`, a comma-separated list as `[core] sensitive_var_conn_names`
    /// holds it (blank items are ignored; items are lowercased, as names are before matching).
    #[must_use]
    pub fn with_extra(extra: &str) -> Self {
        let mut names = Self::default();
        for field in extra.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let field = normalize(field);
            if !names.fields.contains(&field) {
                names.fields.push(field);
            }
        }
        names
    }

    /// These names, hiding values (`hide`, the default) or not: `[core]
    /// hide_sensitive_var_conn_fields`. Not hiding, no name is sensitive, so values are masked
    /// only because they are known secrets (a connection's password or whole `extra`), never
    /// because of the name they stand under (a variable's key, an `extra` key, an `env` name, a
    /// conf key), as in Airflow.
    #[must_use]
    pub fn hiding(mut self, hide: bool) -> Self {
        self.hide = hide;
        self
    }

    /// Whether values named `name` are secret.
    #[must_use]
    pub fn is_sensitive(&self, name: &str) -> bool {
        if !self.hide {
            return false;
        }
        let normalized = normalize(name);
        self.fields.iter().any(|f| normalized.contains(f.as_str()))
    }
}

/// `name` trimmed, lowercased, with each run of other characters than letters, digits and `_`
/// as one `_` (Python's `re.sub(r"\W+", "_", ...)`).
fn normalize(name: &str) -> String {
    let mut normalized = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.trim().to_lowercase().chars() {
        if c.is_alphanumeric() || c == '_' {
            normalized.push(c);
            in_run = false;
        } else if !in_run {
            normalized.push('_');
            in_run = true;
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_names_are_found_inside_other_words() {
        let names = SensitiveNames::default();
        for name in [
            "password",
            "DB_PASSWORD",
            "my-api-key",
            "API Key",
            "aws_secret_access_key",
            "Token",
            "MYSECRET",
        ] {
            assert!(names.is_sensitive(name), "{name}");
        }
        for name in ["host", "region", "key", "monkey", "api"] {
            assert!(!names.is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn configured_names_add_to_the_defaults() {
        let names = SensitiveNames::with_extra(" Pin_Code , ,otp");
        assert!(names.is_sensitive("bank_pin_code"));
        assert!(names.is_sensitive("OTP"));
        assert!(names.is_sensitive("password"));
        assert!(!names.is_sensitive("pin"));
    }

    #[test]
    fn not_hiding_makes_no_name_sensitive() {
        let names = SensitiveNames::with_extra("otp").hiding(false);
        for name in ["password", "api_key", "MYSECRET", "otp"] {
            assert!(!names.is_sensitive(name), "{name}");
        }
        assert!(names.hiding(true).is_sensitive("otp"));
    }
}

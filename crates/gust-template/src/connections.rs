//! `conn`: Airflow 3's connection accessor. `conn.ID.host`, `.login`, `.password`, `.port`,
//! `.schema`, `.extra`, `.extra_dejson.KEY`, `conn.get('ID')`. A connection that does not exist is
//! undefined, so the template fails naming `conn.ID`, as Airflow fails with "isn't defined".

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Object, ObjectRepr, Value, from_args};
use minijinja::{Error, ErrorKind, State};

use crate::lookup::{RuntimeLookup, TemplateConnection};

/// `conn`.
pub(crate) struct Connections {
    pub lookup: Arc<dyn RuntimeLookup>,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<ConnectionAccessor (dynamic access)>")
    }
}

impl Object for Connections {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.lookup
            .connection(key.as_str()?)
            .map(|c| Value::from_object(ConnectionValue(c)))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let (conn_id, default): (&str, Option<Value>) = from_args(args)?;
        Ok(match self.lookup.connection(conn_id) {
            Some(c) => Value::from_object(ConnectionValue(c)),
            None => default.unwrap_or(Value::from(())),
        })
    }
}

/// One connection; unset fields are `None`, as in Airflow.
struct ConnectionValue(TemplateConnection);

impl fmt::Debug for ConnectionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Python's `str(Connection)` is its id; never the secrets.
        f.write_str(&self.0.conn_id)
    }
}

impl ConnectionValue {
    /// The extras parsed as JSON; `{}` when there are none or they are not a JSON object,
    /// as Airflow's `extra_dejson` (which logs the parse error and returns `{}`).
    fn extra_dejson(&self) -> Value {
        let parsed = self
            .0
            .extra
            .as_deref()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
        Value::from_serialize(parsed)
    }
}

fn optional(value: Option<&str>) -> Value {
    value.map_or(Value::from(()), Value::from)
}

impl Object for ConnectionValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let c = &self.0;
        Some(match key.as_str()? {
            "conn_id" => Value::from(c.conn_id.clone()),
            "conn_type" => Value::from(c.conn_type.clone()),
            "host" => optional(c.host.as_deref()),
            "login" => optional(c.login.as_deref()),
            "password" => optional(c.password.as_deref()),
            "schema" => optional(c.schema.as_deref()),
            "port" => c.port.map_or(Value::from(()), Value::from),
            "extra" => optional(c.extra.as_deref()),
            "description" => optional(c.description.as_deref()),
            "extra_dejson" => self.extra_dejson(),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "get_extra_dejson" => {
                let () = from_args(args)?;
                Ok(self.extra_dejson())
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

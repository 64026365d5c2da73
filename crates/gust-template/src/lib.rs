//! Jinja templates with Airflow's context names and macros, on minijinja.
//!
//! String arguments of tasks are templates rendered right before a try starts. This crate is
//! pure rendering: it reads no database or file, and no clock but for `macros.datetime.now()`;
//! variables, connections and XComs come from the caller through [`RuntimeLookup`]. Python's
//! `str`/`dict`/`list` methods work through minijinja-contrib's `pycompat`, since Airflow users
//! write them; Airflow's rendering is the reference (see `tests/airflow_parity.json`). Undefined names are errors that name the task, the argument and the
//! name, never empty strings. Templates are untrusted input: their size is bounded and rendering
//! runs on a fuel budget, so no template can hang a scheduler. Start at [`Renderer`].

mod check;
mod connections;
mod context;
mod date_math;
mod inlets;
mod lookup;
mod macros;
mod objects;

use std::sync::Arc;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

pub use check::Known;
pub use context::TemplateContext;
pub use inlets::Inlet;
pub use lookup::{
    AssetQuery, MapLookup, NoLookup, RuntimeLookup, TemplateConnection, XComRows, join_url,
};

/// The longest template accepted (bytes).
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// Instructions one rendering may execute before it is stopped.
const FUEL: u64 = 5_000_000;
/// How deeply templates may nest (macros, includes, nested blocks).
const RECURSION_LIMIT: usize = 64;

/// Why one template did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is larger than [`MAX_TEMPLATE_BYTES`].
    #[error("template is {len} bytes; the limit is {MAX_TEMPLATE_BYTES}")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The template is not valid Jinja.
    #[error("syntax error in template (line {line}): {detail}")]
    Syntax {
        /// The line inside the template.
        line: usize,
        /// What the parser said.
        detail: String,
    },
    /// A name the context does not hold.
    #[error("undefined name \"{name}\" in template (line {line})")]
    Undefined {
        /// The name, with its attribute path (`params.limit`).
        name: String,
        /// The line inside the template.
        line: usize,
    },
    /// A name no run will define, found by [`Renderer::check`] when DAGs load.
    #[error("\"{name}\" in template (line {line}) would be undefined when the task runs: {why}")]
    WillBeUndefined {
        /// The name, with its attribute path (`dag_run.nope`).
        name: String,
        /// The line inside the template.
        line: usize,
        /// Why no run defines it.
        why: String,
    },
    /// `+` or `-` on a date or timedelta, which minijinja's operators do not take (Python's do).
    #[error(
        "dates and timedeltas cannot be added or subtracted with \"{op}\" in Gust's templates \
         (line {line}); use the dates' methods, as Airflow's pendulum dates have them: \
         logical_date.subtract(days=1), .add(hours=2), .replace(day=1), or macros.ds_add(ds, -1)"
    )]
    DateArithmetic {
        /// The operator, `+` or `-`.
        op: char,
        /// The line inside the template.
        line: usize,
    },
    /// The template used too much fuel (a runaway loop).
    #[error("template runs too long (more than {FUEL} steps); simplify its loops")]
    TooLong,
    /// Any other failure while rendering (a bad macro argument, a bad filter input...).
    #[error("template error (line {line}): {detail}")]
    Render {
        /// The line inside the template.
        line: usize,
        /// What went wrong.
        detail: String,
    },
}

/// A template of one task argument that did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task \"{task}\", argument \"{argument}\": {error}")]
pub struct RenderError {
    /// The task.
    pub task: String,
    /// The argument, with the path inside it (`env.HOME`, `arguments[2]`).
    pub argument: String,
    /// What went wrong.
    pub error: TemplateError,
}

/// Renders templates with Airflow's context. Build one and reuse it.
pub struct Renderer {
    env: Environment<'static>,
    /// The stand-in context for checks when nothing is known of variables and connections (as
    /// when DAG files load), built once: building it per template was most of a load's time.
    unknown_probe: std::sync::OnceLock<Value>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renderer")
    }
}

/// Whether `text` holds any Jinja syntax at all.
fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// The name an undefined value is given when it is not a name of the template (a subscript
/// such as `conf["key"]` is undefined, not a path minijinja can name).
const UNKNOWN_NAME: &str = "?";

impl Renderer {
    /// A renderer configured as Airflow renders: strict undefined names, no autoescape,
    /// trailing newlines kept, Airflow's date filters.
    #[must_use]
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        // Python's str, dict and list methods (`.get`, `.upper()`, `.split(',')`, `.items()`...),
        // which Airflow users write because Airflow renders with Python's Jinja.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        objects::add_filters(&mut env);
        Self {
            env,
            unknown_probe: std::sync::OnceLock::new(),
        }
    }

    /// Compiles `source` without rendering it, to report syntax errors when DAGs load.
    pub fn check_syntax(&self, source: &str) -> Result<(), TemplateError> {
        if !is_template(source) {
            return Ok(());
        }
        self.compile(source).map(drop)
    }

    /// Compiles `source`, bounded in size.
    fn compile<'s>(&self, source: &'s str) -> Result<minijinja::Template<'_, 's>, TemplateError> {
        check_size(source)?;
        self.env
            .template_from_str(source)
            .map_err(|err| TemplateError::Syntax {
                line: err.line().unwrap_or(1),
                detail: detail(&err),
            })
    }

    /// Checks `source` when DAGs load: its syntax, and that it uses no name that will be
    /// undefined in every run (an unknown context name, a missing attribute of a fixed object,
    /// a variable or connection `known` says does not exist). Params and conf keys are not
    /// reported: a run's conf may give them.
    pub fn check(&self, source: &str, known: &Known) -> Result<(), TemplateError> {
        if !is_template(source) {
            return Ok(());
        }
        let template = self.compile(source)?;
        let probe = if known.is_nothing_known() {
            self.unknown_probe
                .get_or_init(|| check::probe(known))
                .clone()
        } else {
            check::probe(known)
        };
        match self.render_compiled(&template, &probe) {
            // Undefined through a subscript (`dag_run.conf["key"]`), not a name: a run may
            // define it.
            Err(TemplateError::Undefined { name, .. }) if name == UNKNOWN_NAME => Ok(()),
            Err(TemplateError::Undefined { name, line }) => {
                match check::why_undefined(&name, known) {
                    Some(why) => Err(TemplateError::WillBeUndefined { name, line, why }),
                    None => Ok(()),
                }
            }
            // `+`/`-` on a date fails in every run: the dates are real even in the stand-in run.
            Err(err @ TemplateError::DateArithmetic { .. }) => Err(err),
            // Other failures come from the stand-in values, not from the template.
            _ => Ok(()),
        }
    }

    /// Renders one template.
    pub fn render_str(
        &self,
        source: &str,
        ctx: &TemplateContext,
        lookup: Arc<dyn RuntimeLookup>,
    ) -> Result<String, TemplateError> {
        if !is_template(source) {
            return Ok(source.to_owned());
        }
        self.render_with(source, &ctx.to_value(lookup))
    }

    fn render_with(&self, source: &str, values: &Value) -> Result<String, TemplateError> {
        let template = self.compile(source)?;
        self.render_compiled(&template, values)
    }

    /// Renders a compiled template, naming what failed as [`TemplateError`] does.
    fn render_compiled(
        &self,
        template: &minijinja::Template<'_, '_>,
        values: &Value,
    ) -> Result<String, TemplateError> {
        template.render(values).map_err(|err| {
            let line = err.line().unwrap_or(1);
            // A method called on an undefined name (`macros.dateutil.relativedelta(...)`) is an
            // undefined name too, not a bad call: name it the same way.
            let undefined_receiver = err
                .detail()
                .is_some_and(|d| d.starts_with("undefined has no method named"));
            match err.kind() {
                _ if undefined_receiver => TemplateError::Undefined {
                    name: self
                        .undefined_name(template, values)
                        .unwrap_or_else(|| UNKNOWN_NAME.to_owned()),
                    line,
                },
                ErrorKind::UndefinedError => TemplateError::Undefined {
                    name: self
                        .undefined_name(template, values)
                        .unwrap_or_else(|| UNKNOWN_NAME.to_owned()),
                    line,
                },
                ErrorKind::OutOfFuel => TemplateError::TooLong,
                _ => match date_arithmetic(&err) {
                    Some(op) => TemplateError::DateArithmetic { op, line },
                    None => TemplateError::Render {
                        line,
                        detail: detail(&err),
                    },
                },
            }
        })
    }

    /// Finds which name of the template is undefined: minijinja reports that one is, not which.
    /// The shortest undefined prefix is blamed (`conn.nope` in `conn.nope.host`).
    fn undefined_name(
        &self,
        template: &minijinja::Template<'_, '_>,
        values: &Value,
    ) -> Option<String> {
        let mut names: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        // Shorter paths first, so `params` is blamed before `params.x` when params itself is missing.
        names.sort_by_key(|n| (n.matches('.').count(), n.clone()));
        let undefined = |path: &str| {
            self.env
                .compile_expression(path)
                .and_then(|expr| expr.eval(values))
                .map_or(true, |value| value.is_undefined())
        };
        names.into_iter().find_map(|name| {
            let ends = name.match_indices('.').map(|(i, _)| i).chain([name.len()]);
            ends.map(|end| &name[..end])
                .find(|prefix| undefined(prefix))
                .map(str::to_owned)
        })
    }

    /// Renders every string inside `value` (map values and list items; keys are left alone).
    /// Errors name the task, the argument and the path inside it.
    pub fn render_value(
        &self,
        value: &serde_json::Value,
        argument: &str,
        ctx: &TemplateContext,
        lookup: Arc<dyn RuntimeLookup>,
    ) -> Result<serde_json::Value, RenderError> {
        let mut values = None;
        self.render_json(value, &mut argument.to_owned(), ctx, &lookup, &mut values)
    }

    fn render_json(
        &self,
        value: &serde_json::Value,
        path: &mut String,
        ctx: &TemplateContext,
        lookup: &Arc<dyn RuntimeLookup>,
        values: &mut Option<Value>,
    ) -> Result<serde_json::Value, RenderError> {
        use serde_json::Value as J;
        Ok(match value {
            J::String(text) if is_template(text) => {
                // The context is built once per argument, and only if a template needs it.
                let values = values.get_or_insert_with(|| ctx.to_value(Arc::clone(lookup)));
                J::String(
                    self.render_with(text, values)
                        .map_err(|error| RenderError {
                            task: ctx.task_id.clone(),
                            argument: path.clone(),
                            error,
                        })?,
                )
            }
            J::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    out.push(self.render_json(item, path, ctx, lookup, values)?);
                    path.truncate(len);
                }
                J::Array(out)
            }
            J::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (key, item) in map {
                    let len = path.len();
                    path.push('.');
                    path.push_str(key);
                    out.insert(
                        key.clone(),
                        self.render_json(item, path, ctx, lookup, values)?,
                    );
                    path.truncate(len);
                }
                J::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// The operator when `err` is minijinja's refusal of `+`/`-` on one of our objects (dates,
/// timedeltas), which Python would compute: `tried to use - operator on unsupported types
/// plain object and plain object`.
fn date_arithmetic(err: &minijinja::Error) -> Option<char> {
    if err.kind() != ErrorKind::InvalidOperation {
        return None;
    }
    let detail = err.detail()?;
    let op = detail
        .strip_prefix("tried to use ")?
        .chars()
        .next()
        .filter(|c| matches!(c, '+' | '-'))?;
    detail.contains("plain object").then_some(op)
}

fn check_size(source: &str) -> Result<(), TemplateError> {
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::TooLarge { len: source.len() });
    }
    Ok(())
}

/// minijinja's explanation without its location suffix, lowercase-first as our messages are.
fn detail(err: &minijinja::Error) -> String {
    let text = err
        .detail()
        .map_or_else(|| err.kind().to_string(), str::to_owned);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

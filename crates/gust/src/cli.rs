//! The command-line grammar (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Gust: workflows of containers and commands, scheduled like Airflow, in one binary.
#[derive(Debug, Parser)]
#[command(name = "gust", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and check DAGs.
    #[command(subcommand)]
    Dags(DagsCommand),
    /// Show the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the metadata database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Manage variables (templates read them as `var.value.KEY` and `var.json.KEY`).
    #[command(subcommand)]
    Variables(VariablesCommand),
    /// Manage connections (secrets encrypted at rest, never printed).
    #[command(subcommand)]
    Connections(ConnectionsCommand),
    /// Manage pools (slot budgets that tasks take slots from).
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// Work with single tasks.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Kubernetes set-up for pod tasks.
    #[command(subcommand)]
    Kubernetes(KubernetesCommand),
    /// Manage the users of the REST API and the web UI.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Move artifacts between local paths and object stores (s3://, oss://, gs://, az://, file://).
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),
    /// The Python environment that runs Python tasks (`[python] interpreter`).
    #[command(subcommand)]
    Python(PythonCommand),
    /// Run the scheduler: watch the DAGs folder, create runs, run tasks (until Ctrl-C).
    Scheduler(ServeArgs),
    /// Serve the REST API (Airflow 3's /api/v2) and the web UI (until Ctrl-C).
    ApiServer(ApiServerArgs),
    /// Everything in one process on this machine: migrate the database, create an admin user on
    /// first start, then run the scheduler, the REST API and the web UI.
    Standalone(StandaloneArgs),
    /// Print Gust's version.
    Version,
}

/// Where DAGs are read from.
#[derive(Debug, Clone, Args)]
pub struct DagsFolder {
    /// Read DAGs from DIR instead of the configured `[core] dags_folder`.
    #[arg(long, value_name = "DIR")]
    pub dags_folder: Option<PathBuf>,
}

/// `gust dags ...`
#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// List the DAGs that load without errors.
    List {
        #[command(flatten)]
        folder: DagsFolder,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Check DAG files; print every problem as FILE:LINE:COL: DAG[.TASK]: message.
    Validate {
        /// Files or folders to check (default: the DAGs folder).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        folder: DagsFolder,
    },
    /// Print the dag-factory YAML of a Python DAG (a `.py` file), when every task can be
    /// written in YAML; otherwise name the first task that cannot.
    ExportYaml {
        /// The DAG.
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
    },
    /// Show a DAG's tasks and edges.
    Show {
        /// The DAG.
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
        /// Text for reading, DOT for Graphviz, Mermaid for Markdown.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Run a DAG once, in this process, and print how each task ended (exit 0 iff the run succeeded).
    Test {
        /// The DAG.
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
        /// The run's conf, a JSON object overriding the DAG's params.
        #[arg(long, value_name = "JSON")]
        conf: Option<String>,
        /// The run's logical date (default: now).
        #[arg(long, value_name = "DATE")]
        logical_date: Option<String>,
        /// Run `kubernetes_pod` tasks with the local pod runtime (as processes on this host).
        #[arg(long)]
        local_pods: bool,
    },
    /// Pause a DAG: the scheduler creates no runs for it and starts none of its tasks.
    Pause {
        /// The DAG.
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
    },
    /// Unpause a DAG.
    Unpause {
        /// The DAG.
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
    },
    /// Create a manual run; a running scheduler picks it up.
    Trigger {
        /// The DAG.
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
        /// The run's conf, a JSON object (its keys override the DAG's params).
        #[arg(long, short, value_name = "JSON")]
        conf: Option<String>,
        /// The run's id (default `manual__<trigger time>`, as Airflow 3.3 names it).
        #[arg(long, short, value_name = "ID")]
        run_id: Option<String>,
        /// The run's logical date (default: now).
        #[arg(long, short, value_name = "DATE")]
        logical_date: Option<String>,
    },
    /// List a DAG's runs, newest first.
    ListRuns {
        /// The DAG.
        dag_id: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 25)]
        limit: i64,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Create the runs of every schedule interval between two dates; a running scheduler runs
    /// them, within `max_active_runs`.
    Backfill {
        /// The DAG.
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
        /// The first logical date.
        #[arg(long, short, value_name = "DATE")]
        start_date: String,
        /// The last logical date.
        #[arg(long, short, value_name = "DATE")]
        end_date: String,
        /// The runs' conf, a JSON object.
        #[arg(long, short, value_name = "JSON")]
        conf: Option<String>,
    },
    /// List the problems that keep DAG files from loading.
    ListImportErrors {
        #[command(flatten)]
        folder: DagsFolder,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// `gust variables ...`
#[derive(Debug, Subcommand)]
pub enum VariablesCommand {
    /// Print a variable's value.
    Get {
        /// The variable.
        key: String,
    },
    /// Set a variable.
    Set {
        /// The variable.
        key: String,
        /// Its value.
        value: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the variables' keys.
    List,
    /// Delete a variable.
    Delete {
        /// The variable.
        key: String,
    },
}

/// `gust connections ...` (Airflow's flag names).
#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Create or replace a connection.
    Add {
        /// The connection's id.
        conn_id: String,
        /// The whole connection as Airflow's URI form,
        /// `TYPE://LOGIN:PASSWORD@HOST:PORT/SCHEMA?EXTRA=VALUE`; other flags override its parts.
        #[arg(long)]
        conn_uri: Option<String>,
        /// Its type (`kubernetes`, `aws`, `postgres`...); required without --conn-uri.
        #[arg(long)]
        conn_type: Option<String>,
        /// Host.
        #[arg(long)]
        conn_host: Option<String>,
        /// User name.
        #[arg(long)]
        conn_login: Option<String>,
        /// Password (encrypted at rest).
        #[arg(long)]
        conn_password: Option<String>,
        /// Schema or database.
        #[arg(long)]
        conn_schema: Option<String>,
        /// Port.
        #[arg(long)]
        conn_port: Option<u16>,
        /// Extra settings, a JSON object (encrypted at rest).
        #[arg(long)]
        conn_extra: Option<String>,
        /// What it is for.
        #[arg(long)]
        conn_description: Option<String>,
    },
    /// Show a connection (its password as ***).
    Get {
        /// The connection's id.
        conn_id: String,
    },
    /// List the connections.
    List,
    /// Delete a connection.
    Delete {
        /// The connection's id.
        conn_id: String,
    },
}

/// `gust pools ...`
#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// Create or resize a pool.
    Set {
        /// The pool.
        name: String,
        /// How many slots it has.
        slots: u32,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the pools.
    List,
}

/// `gust tasks ...`
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Show the state of every task instance of a run, with its latest try.
    StatesForDagRun {
        /// The DAG.
        dag_id: String,
        /// The run.
        run_id: String,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Clear task instances so they run again (their runs are re-queued).
    Clear {
        /// The DAG.
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
        /// Only tasks whose id matches this regular expression.
        #[arg(long, short = 't', value_name = "REGEX")]
        task_regex: Option<String>,
        /// Only runs with a logical date at or after this.
        #[arg(long, short, value_name = "DATE")]
        start_date: Option<String>,
        /// Only runs with a logical date at or before this.
        #[arg(long, short, value_name = "DATE")]
        end_date: Option<String>,
        /// Only failed (and upstream_failed) instances.
        #[arg(long, short = 'f')]
        only_failed: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Run one task once, in this process, ignoring its upstreams and recording nothing (as
    /// Airflow's `tasks test`); exit 0 only if it succeeded.
    Test {
        /// The DAG.
        dag_id: String,
        /// The task.
        task_id: String,
        #[command(flatten)]
        folder: DagsFolder,
        /// The run's conf, a JSON object overriding the DAG's params.
        #[arg(long, value_name = "JSON")]
        conf: Option<String>,
        /// The logical date (default: now).
        #[arg(long, value_name = "DATE")]
        logical_date: Option<String>,
        /// Run a `kubernetes_pod` task with the local pod runtime (as processes on this host).
        #[arg(long)]
        local_pods: bool,
        /// Which instance of a mapped task (required for one; -1, the default, for a task
        /// that is not mapped). Only lists written in the DAG file are known outside a run.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        map_index: Option<i32>,
    },
    /// Print what a task would run, templates rendered, without running it: for a
    /// `kubernetes_pod` task the exact pod manifest (YAML), for others its arguments.
    DryRun {
        /// The DAG.
        dag_id: String,
        /// The task.
        task_id: String,
        #[command(flatten)]
        folder: DagsFolder,
        /// The run's conf, a JSON object overriding the DAG's params.
        #[arg(long, value_name = "JSON")]
        conf: Option<String>,
        /// The logical date (default: now).
        #[arg(long, value_name = "DATE")]
        logical_date: Option<String>,
        /// Which instance of a mapped task (required for one; -1, the default, for a task
        /// that is not mapped). Only lists written in the DAG file are known outside a run.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        map_index: Option<i32>,
    },
}

/// `gust kubernetes ...`
#[derive(Debug, Subcommand)]
pub enum KubernetesCommand {
    /// Print the ServiceAccount, Role and RoleBinding the pod runtime needs in a namespace
    /// (`gust kubernetes rbac | kubectl apply -f -`).
    Rbac {
        /// The namespace pods run in.
        #[arg(long, short, default_value = "default")]
        namespace: String,
        /// The service account Gust runs as.
        #[arg(long, default_value = "gust")]
        service_account: String,
        /// Also grant what the operators the folder's DAGs use call (Jobs for kubernetes_job,
        /// kueue_job, kubernetes_delete_job and kubernetes_patch_job).
        #[command(flatten)]
        folder: DagsFolder,
    },
}

/// `gust artifacts ...`
#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// List the object a URI names, or every object under it: size, modified, URI.
    Ls {
        /// An object store URI or a local path.
        uri: String,
    },
    /// Download an object (to DEST, or into it when DEST ends with / or is a folder), or every
    /// object under a prefix into the folder DEST, keeping relative paths.
    Get {
        /// An object store URI or a local path.
        uri: String,
        /// Where to put it.
        dest: PathBuf,
    },
    /// Upload a file to the object URI, or every file under a folder to URI/<relative path>.
    Put {
        /// A local file or folder.
        src: PathBuf,
        /// An object store URI or a local path.
        uri: String,
    },
    /// Processing pods' init container: install this binary into DIR and download each input
    /// (credentials from GUST_ARTIFACTS_* and the standard variables only).
    Fetch {
        /// Copy this executable to DIR/gust (mode 0755).
        #[arg(long, value_name = "DIR")]
        install: Option<PathBuf>,
        /// Download URI to DEST (DEST never contains '='; the URI is everything after the first '=').
        #[arg(long = "input", value_name = "DEST=URI")]
        inputs: Vec<String>,
        /// On failure, also write the error to FILE (a pod's `/dev/termination-log`, which
        /// Kubernetes and the local pod runtime quote as the container's end).
        #[arg(long, value_name = "FILE")]
        termination_log: Option<PathBuf>,
    },
    /// Processing pods' base container: run COMMAND (without GUST_ARTIFACTS_* variables), and
    /// when it exits 0 upload each output; exit with the command's code.
    Run {
        /// Write each output's URI under its name into this JSON object file (keeping its keys).
        #[arg(long, value_name = "FILE")]
        xcom: Option<PathBuf>,
        /// Upload PATH (a file or folder) to URI as output NAME.
        #[arg(long = "output", value_name = "NAME=PATH=URI")]
        outputs: Vec<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

/// `gust db ...`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or upgrade the schema (`[database] url`).
    Migrate,
    /// Check the database answers and its schema is current.
    Check,
}

/// `gust config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every effective setting (file, environment and defaults combined).
    List,
}

/// `gust python ...`
#[derive(Debug, Subcommand)]
pub enum PythonCommand {
    /// Say whether the Python environment can run Python tasks: Airflow's Task SDK and
    /// dag-factory importable, in versions that speak Gust's Execution API; and how to fix it.
    Check {
        /// The Python to check instead of `[python] interpreter`.
        #[arg(long, value_name = "PYTHON")]
        interpreter: Option<std::path::PathBuf>,
    },
}

/// Output formats for lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Graph formats for `dags show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Tasks in run order with their upstreams.
    Text,
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Flags of `gust scheduler` and `gust standalone`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub folder: DagsFolder,
}

/// Where the API server listens.
#[derive(Debug, Clone, Args)]
pub struct Listen {
    /// Listen on this port instead of `[api] port` (default 8080).
    #[arg(long, short, value_name = "PORT")]
    pub port: Option<u16>,
    /// Listen on this address instead of `[api] host` (default 0.0.0.0).
    #[arg(long, value_name = "ADDRESS")]
    pub host: Option<String>,
}

/// `gust api-server`.
#[derive(Debug, Clone, Args)]
pub struct ApiServerArgs {
    #[command(flatten)]
    pub listen: Listen,
}

/// `gust standalone`.
#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub listen: Listen,
}

/// `gust users ...`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        /// The login name.
        #[arg(long, short)]
        username: String,
        /// The password (at least 8 characters); `-` reads it from standard input.
        #[arg(long, short)]
        password: String,
        /// What the user may do (Airflow's roles, in any case: `Viewer`, `User`, `Op`, `Admin`):
        /// viewer reads, user also pauses, triggers, clears and marks, op also reads and edits
        /// variables and connections and edits pools, admin also manages users.
        #[arg(long, short, value_enum, ignore_case = true)]
        role: RoleArg,
    },
    /// List the users and their roles.
    List {
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Delete a user (their tokens stop working at once).
    Delete {
        /// The login name.
        #[arg(long, short)]
        username: String,
    },
}

/// A user's role (Airflow's default roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Reads DAGs, runs, task instances, logs, XComs and pools; not variables or connections.
    Viewer,
    /// Also pauses, triggers, clears, marks and deletes.
    User,
    /// Also reads and edits variables and connections, and edits pools.
    Op,
    /// Also manages users.
    Admin,
}

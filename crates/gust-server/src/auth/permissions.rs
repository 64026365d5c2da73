//! Which role each call needs: Airflow's default role table (its FAB auth manager's Viewer,
//! User, Op and Admin, each including the one before) laid over Gust's endpoints. Pure: a
//! method and a path in, the least role out; the middleware and the UI pages ask it.
//!
//! | role | may |
//! |---|---|
//! | Viewer | read DAGs (their versions and source), runs, task instances, logs, XComs, pools, import errors, the event log, jobs |
//! | User | also pause and delete DAGs, trigger, clear, mark, note and delete runs and task instances, backfill, create asset events |
//! | Op | also read, edit and test variables and connections, edit pools, read the configuration and providers, create XComs |
//! | Admin | also manage users (`gust users`) |

use axum::http::Method;
use gust_store::Role;

/// The least role that may call `method` on `path` (a path of the REST API, `/api/v2/...`).
#[must_use]
pub fn required_role(method: &Method, path: &str) -> Role {
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let resource = path
        .strip_prefix("/api/v2/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    match resource {
        // Airflow's Viewer and User roles cannot read variables or connections: their values
        // and hosts are configuration, often with credentials in them.
        "variables" | "connections" => Role::Op,
        // Airflow's Op role is the first that reads the configuration and the providers.
        "config" | "providers" => Role::Op,
        "pools" if reads => Role::Viewer,
        "pools" => Role::Op,
        _ if reads => Role::Viewer,
        // A list whose filters are too long for a query string: a read sent by POST.
        "dags"
            if *method == Method::POST
                && (path.ends_with("/dagRuns/list") || path.ends_with("/taskInstances/list")) =>
        {
            Role::Viewer
        }
        // XComs are what tasks hand each other: writing one by hand feeds the tasks after it.
        // Airflow's FAB roles give no role below Admin `can_create` on XComs; Gust lets the Op
        // role, which Airflow lets delete them, create them too.
        "dags" if *method == Method::POST && path.ends_with("/xcomEntries") => Role::Op,
        "dags" => Role::User,
        // A backfill is runs: Airflow checks run permissions for it.
        "backfills" => Role::User,
        // An asset event triggers the DAGs scheduled on the asset, as a user's trigger does.
        "assets" => Role::User,
        // A change to anything else (none is served today) needs the most trusted operator.
        _ => Role::Op,
    }
}

/// Whether `role` may open the UI's page of variables and connections (and see their links).
#[must_use]
pub fn may_read_configuration(role: Role) -> bool {
    role >= required_role(&Method::GET, "/api/v2/variables")
}

/// Whether `role` may pause, trigger, clear and mark from the UI.
#[must_use]
pub fn may_act_on_dags(role: Role) -> bool {
    role >= required_role(&Method::POST, "/api/v2/dags/x/dagRuns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table_is_airflows() {
        let get = Method::GET;
        let post = Method::POST;
        let patch = Method::PATCH;
        let delete = Method::DELETE;
        let table: &[(&Method, &str, Role)] = &[
            (&get, "/api/v2/dags", Role::Viewer),
            (
                &get,
                "/api/v2/dags/d/dagRuns/r/taskInstances/t/logs/1",
                Role::Viewer,
            ),
            (
                &get,
                "/api/v2/dags/d/dagRuns/r/taskInstances/t/xcomEntries",
                Role::Viewer,
            ),
            (&get, "/api/v2/pools", Role::Viewer),
            (&get, "/api/v2/importErrors", Role::Viewer),
            (&post, "/api/v2/dags/~/dagRuns/list", Role::Viewer),
            (
                &post,
                "/api/v2/dags/~/dagRuns/~/taskInstances/list",
                Role::Viewer,
            ),
            (&patch, "/api/v2/dags/d", Role::User),
            (&delete, "/api/v2/dags/d", Role::User),
            (&post, "/api/v2/dags/d/dagRuns", Role::User),
            (&patch, "/api/v2/dags/d/dagRuns/r", Role::User),
            (&delete, "/api/v2/dags/d/dagRuns/r", Role::User),
            (&post, "/api/v2/dags/d/dagRuns/r/clear", Role::User),
            (&post, "/api/v2/dags/d/clearTaskInstances", Role::User),
            (
                &patch,
                "/api/v2/dags/d/dagRuns/r/taskInstances/t",
                Role::User,
            ),
            (&get, "/api/v2/dagStats", Role::Viewer),
            (&get, "/api/v2/dagWarnings", Role::Viewer),
            (&get, "/api/v2/config", Role::Op),
            (
                &get,
                "/api/v2/config/section/core/option/parallelism",
                Role::Op,
            ),
            (&get, "/api/v2/providers", Role::Op),
            (
                &post,
                "/api/v2/dags/d/dagRuns/r/taskInstances/t/xcomEntries",
                Role::Op,
            ),
            (&get, "/api/v2/variables", Role::Op),
            (&get, "/api/v2/variables/k", Role::Op),
            (&post, "/api/v2/variables", Role::Op),
            (&get, "/api/v2/connections", Role::Op),
            (&get, "/api/v2/connections/c", Role::Op),
            (&delete, "/api/v2/connections/c", Role::Op),
            (&post, "/api/v2/pools", Role::Op),
            (&patch, "/api/v2/pools", Role::Op),
            (&patch, "/api/v2/variables", Role::Op),
            (&patch, "/api/v2/connections", Role::Op),
            (&post, "/api/v2/connections/test", Role::Op),
            (&patch, "/api/v2/dags", Role::User),
            (&post, "/api/v2/backfills", Role::User),
            (&post, "/api/v2/backfills/dry_run", Role::User),
            (&get, "/api/v2/backfills/1", Role::Viewer),
            (&get, "/api/v2/eventLogs", Role::Viewer),
            (&get, "/api/v2/eventLogs/1", Role::Viewer),
            (&get, "/api/v2/jobs", Role::Viewer),
            (&get, "/api/v2/dagSources/d", Role::Viewer),
            (&get, "/api/v2/dags/d/dagVersions/1", Role::Viewer),
            (&patch, "/api/v2/pools/p", Role::Op),
        ];
        for (method, path, role) in table {
            assert_eq!(required_role(method, path), *role, "{method} {path}");
        }
        assert!(!may_read_configuration(Role::User));
        assert!(may_read_configuration(Role::Op));
        assert!(!may_act_on_dags(Role::Viewer));
        assert!(may_act_on_dags(Role::User));
    }
}

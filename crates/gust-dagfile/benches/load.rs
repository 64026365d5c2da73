//! How fast a DAGs folder loads: `cargo bench -p gust-dagfile`.
//!
//! Writes a folder of generated dag-factory files (defaults files, task groups, chains,
//! templates) to a temporary directory, then loads it several times and reports the best time,
//! per file and per task. Figures go to docs/benchmarks.md.

use std::fmt::Write as _;
use std::time::Instant;

const FILES: usize = 200;
const DAGS_PER_FILE: usize = 5;
const TASKS_PER_DAG: usize = 20;
const ROUNDS: usize = 5;

fn dag_file(file: usize) -> String {
    let mut text = String::from(
        "default:\n  default_args: {owner: bench, retries: 2, retry_delay: 1m}\n  catchup: false\n",
    );
    for d in 0..DAGS_PER_FILE {
        let _ = write!(
            text,
            "bench_{file}_{d}:\n  schedule: '*/15 * * * *'\n  start_date: 2024-01-01\n  task_groups:\n    g: {{tooltip: grouped}}\n  tasks:\n"
        );
        for t in 0..TASKS_PER_DAG {
            let group = if t % 4 == 0 {
                "\n      task_group_name: g"
            } else {
                ""
            };
            let deps = if t == 0 {
                String::new()
            } else {
                format!("\n      dependencies: [t{}]", t - 1)
            };
            let _ = write!(
                text,
                "    t{t}:\n      operator: bash\n      bash_command: echo {{{{ ds }}}} {{{{ params.x | default(1) }}}} {t}{group}{deps}\n"
            );
        }
        text.push_str("  chains:\n    - t0 >> [t1, t2]\n");
    }
    text
}

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("defaults.yml"), "tags: [bench]\n").expect("defaults");
    for file in 0..FILES {
        let sub = dir.path().join(format!("team{}", file % 10));
        std::fs::create_dir_all(&sub).expect("folder");
        std::fs::write(sub.join(format!("f{file}.yaml")), dag_file(file)).expect("file");
    }
    let mut best = f64::MAX;
    let mut dags = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let load = gust_dagfile::load_folder(dir.path(), chrono::DateTime::UNIX_EPOCH)
            .expect("the folder");
        best = best.min(start.elapsed().as_secs_f64());
        assert!(load.problems.is_empty(), "{:?}", load.problems.first());
        dags = load.dags.len();
    }
    let tasks = dags * TASKS_PER_DAG;
    println!("load_folder: {FILES} files, {dags} DAGs, {tasks} tasks");
    println!("  best of {ROUNDS}: {:.1} ms", best * 1e3);
    println!(
        "  per file: {:.1} us, per task: {:.2} us",
        best * 1e6 / FILES as f64,
        best * 1e6 / tasks as f64
    );
}

//! What the scripted kubelet does with a container, chosen by the container's image.
//!
//! Register a [`PodScript`] per image with [`crate::FakeCluster::script`]; every container
//! running that image then lives the scripted life. The fake never restarts containers: each
//! pod behaves as with `restartPolicy: Never`, which is what a task runtime uses.

use std::time::Duration;

/// How long a container with an unregistered image runs before it exits 0.
pub const UNSCRIPTED_RUN_TIME: Duration = Duration::from_millis(10);

/// The scripted life of a container with a given image.
///
/// The default schedules at once, pulls the image, prints nothing and exits 0 at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodScript {
    /// When the scheduler binds a pod holding this image (the slowest container decides).
    pub scheduling: Scheduling,
    /// Whether, and how, pulling the image fails.
    pub image_pull: ImagePull,
    /// A `CreateContainerConfigError` message (e.g. `secret "db" not found`); the container never starts.
    pub config_error: Option<String>,
    /// Lines printed to stdout once started, one per `line_interval`.
    pub lines: Vec<String>,
    /// The pause after each printed line (default: none).
    pub line_interval: Duration,
    /// How long the container runs after printing its lines (default: none).
    pub runs_for: Duration,
    /// The exit code it ends with (default 0).
    pub exit_code: i32,
    /// The message written to the termination log, shown in `state.terminated.message`.
    pub termination_message: Option<String>,
    /// Ends as the kernel's OOM killer ends it: reason `OOMKilled`, exit code 137.
    pub oom_killed: bool,
    /// Never ends by itself, like an istio proxy; only a signal or the pod's end stops it.
    pub runs_forever: bool,
    /// Ignores SIGTERM, so deleting its pod waits out the whole grace period, then kills it (137).
    pub ignores_sigterm: bool,
    /// The node evicts the pod this long after the container starts (memory pressure).
    pub evict_after: Option<Duration>,
    /// The content of `/airflow/xcom/return.json`, written as the container exits.
    pub xcom: Option<String>,
}

impl PodScript {
    /// The script of a container whose image has none: no output, exit 0 after ~10 ms.
    pub(crate) fn unscripted() -> Self {
        PodScript {
            runs_for: UNSCRIPTED_RUN_TIME,
            ..PodScript::default()
        }
    }
}

/// When the scheduler binds the pod to the fake node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scheduling {
    /// Bound as soon as it is created.
    #[default]
    Immediately,
    /// Bound after this delay.
    After(Duration),
    /// Never bound: `PodScheduled=False`, reason `Unschedulable`, a `FailedScheduling` event.
    Unschedulable,
}

/// How pulling the image goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ImagePull {
    /// Pulled at once.
    #[default]
    Ok,
    /// The registry has no such image or tag: `ErrImagePull`, then `ImagePullBackOff`, forever.
    NotFound,
    /// Pull access denied (a private image without credentials), forever.
    Denied,
    /// The registry answers 429 Too Many Requests for this long, then the pull succeeds.
    RateLimited {
        /// How long the registry keeps refusing.
        lasting: Duration,
    },
    /// The registry answers 503 for this long, then the pull succeeds.
    Registry5xx {
        /// How long the registry keeps failing.
        lasting: Duration,
    },
    /// The image reference cannot be parsed: `InvalidImageName`, forever.
    InvalidName,
}

//! The scripted kubelet: one task per pod plays its scheduling and its containers' lives.
//!
//! [`Kubelet::start`] spawns a pod's task when the pod is created; the task runs until the pod
//! is removed, taking [`PodCommand`]s (a signal from exec, eviction, deletion) on a bounded
//! channel. How each container behaves comes from the [`PodScript`] registered for its image.
//! Phase and conditions are derived by the pure rules in `pod_status`; this module and its
//! children only decide *when* things happen.

mod container;
mod image;
mod pod;
pub(crate) mod pod_status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;

use crate::cluster::ClusterState;
use crate::lock;
use crate::script::PodScript;
use crate::store::PodKey;

/// Commands a pod task can hold before senders see it as busy; commands are rare.
const POD_COMMAND_CAPACITY: usize = 16;

/// What the API server or a fault asks of a pod's task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PodCommand {
    /// A process in `container` got a signal it exits on (exec `kill` into the XCom sidecar).
    Signal {
        /// The container to stop.
        container: String,
        /// The code it exits with.
        exit_code: i32,
    },
    /// The node evicts the pod.
    Evict,
    /// The pod was deleted: stop its containers within `grace`, then remove it.
    Terminate {
        /// The grace period before containers still running are killed.
        grace: Duration,
    },
}

/// Scripts per image and the command channel of every pod's task.
#[derive(Debug, Default)]
pub(crate) struct Kubelet {
    scripts: Mutex<HashMap<String, PodScript>>,
    pods: Mutex<HashMap<PodKey, mpsc::Sender<PodCommand>>>,
}

impl Kubelet {
    /// Registers how containers with `image` behave.
    pub(crate) fn script(&self, image: &str, script: PodScript) {
        lock(&self.scripts).insert(image.to_owned(), script);
    }

    /// The script for `image`, or the unscripted default.
    pub(crate) fn script_for(&self, image: &str) -> PodScript {
        lock(&self.scripts)
            .get(image)
            .cloned()
            .unwrap_or_else(PodScript::unscripted)
    }

    /// Starts the task that plays the newly created `pod`.
    pub(crate) fn start(state: &Arc<ClusterState>, key: PodKey, pod: Arc<Pod>) {
        let (commands, receiver) = mpsc::channel(POD_COMMAND_CAPACITY);
        lock(&state.kubelet.pods).insert(key.clone(), commands.clone());
        let task = pod::PodTask::new(Arc::clone(state), key, pod, commands);
        state.tasks.spawn(task.run(receiver));
    }

    /// Sends `command` to the pod's task; false when the pod has no task (it is gone).
    pub(crate) fn send(&self, key: &PodKey, command: PodCommand) -> bool {
        let Some(sender) = lock(&self.pods).get(key).cloned() else {
            return false;
        };
        match sender.try_send(command) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(pod = %key, %error, "pod task did not take a command");
                false
            }
        }
    }

    /// Forgets the task of a removed pod, unless a new pod of the same name has taken the key.
    fn forget(&self, key: &PodKey, commands: &mpsc::Sender<PodCommand>) {
        let mut pods = lock(&self.pods);
        if pods
            .get(key)
            .is_some_and(|known| known.same_channel(commands))
        {
            pods.remove(key);
        }
    }
}

//! Why a pod's try failed, in words a user can act on.

/// The message for a base container that exited with `code`, with its termination message
/// (what it wrote to /dev/termination-log) when it left one.
#[must_use]
pub fn exit_message(container: &str, code: i32, termination_message: &str) -> String {
    let mut message = format!("container \"{container}\" exited with code {code}");
    if code == 137 {
        message.push_str(" (killed: SIGKILL, often the memory limit)");
    }
    let termination_message = termination_message.trim();
    if !termination_message.is_empty() {
        message.push_str(": ");
        message.push_str(termination_message);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_termination_message_follows_the_exit_code() {
        assert_eq!(
            exit_message("base", 3, "bad input\n"),
            "container \"base\" exited with code 3: bad input"
        );
        assert_eq!(
            exit_message("base", 1, ""),
            "container \"base\" exited with code 1"
        );
    }
}

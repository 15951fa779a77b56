//! Process identity from `/proc`: a pid plus the process's start time, so
//! that a pid the kernel reused is not mistaken for the process that had it.

use std::sync::OnceLock;

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`, clock
/// ticks after boot), or `None` if there is no such process (or `/proc`
/// cannot tell). A zombie still has its entry: it counts as alive until
/// its parent reaps it, which errs on the side of not reclaiming.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts with field 3 (state); field 22 is the 20th after it.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process's start time, read once.
pub(crate) fn own_start_time() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| start_time(std::process::id()).unwrap_or(0))
}

/// This process's pid namespace: the inode of `/proc/self/ns/pid`
/// (truncated to 32 bits; 0 if `/proc` cannot tell), read once.
pub(crate) fn own_pid_namespace() -> u32 {
    use std::os::unix::fs::MetadataExt;
    static NS: OnceLock<u32> = OnceLock::new();
    *NS.get_or_init(|| {
        std::fs::metadata("/proc/self/ns/pid")
            .map(|m| m.ino() as u32)
            .unwrap_or(0)
    })
}

/// `true` if `pid` is the same process that started at `start`.
pub(crate) fn is_alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// `true` unless the process `(pid, pidns, start)` is known to be gone: a
/// process of another pid namespace cannot be looked up in this one's
/// `/proc`, so it is taken to be alive (its resources are never reclaimed
/// from here; a process of its own namespace will).
pub(crate) fn may_be_alive(pid: u32, pidns: u32, start: u64) -> bool {
    pidns != own_pid_namespace() || is_alive(pid, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not_it() {
        let me = std::process::id();
        let start = own_start_time();
        assert!(start > 0);
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1), "same pid, other start time");
        assert!(!is_alive(u32::MAX - 1, start), "no such pid");
        let ns = own_pid_namespace();
        assert_ne!(ns, 0);
        assert!(!may_be_alive(u32::MAX - 1, ns, start));
        assert!(
            may_be_alive(u32::MAX - 1, ns.wrapping_add(1), start),
            "another namespace"
        );
    }
}

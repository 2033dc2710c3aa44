//! A process's CPU time, for the load generators' "server CPU per request".

use std::time::Duration;

/// User + system CPU time of a process, from /proc (Linux).
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // The clock tick (USER_HZ) is 100 per second on Linux.
    Some(Duration::from_millis(ticks * 10))
}

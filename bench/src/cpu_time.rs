//! CPU time consumed by this process (all threads), for "per CPU-second" figures that stay
//! meaningful on a shared machine.

use std::time::Duration;

/// User + system CPU time of the whole process so far, from `/proc/self/stat` (Linux).
/// `None` where that file is not available.
pub fn process_cpu_time() -> Option<Duration> {
    cpu_time_of("self")
}

/// User + system CPU time of process `pid` (`self` for this one) so far, from
/// `/proc/<pid>/stat` (Linux).
pub fn cpu_time_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture Concierge runs on.
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_while_this_process_computes() {
        let before = process_cpu_time().expect("linux /proc");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = process_cpu_time().expect("linux /proc");
        assert!(after > before, "{before:?} -> {after:?}");
    }
}

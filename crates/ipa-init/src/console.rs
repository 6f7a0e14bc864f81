//! Console output: every line is `ipa-init: [<uptime>] <message>`, on stderr (PID 1's
//! stdout and stderr are both `/dev/console`; in host modes stdout carries the data).

use std::fmt;
use std::io::Write as _;

/// Seconds since boot: `/proc/uptime`, or `CLOCK_BOOTTIME` (the same clock) before `/proc`
/// is mounted.
pub fn uptime() -> f64 {
    if let Ok(s) = std::fs::read_to_string("/proc/uptime")
        && let Some(Ok(v)) = s.split_whitespace().next().map(str::parse::<f64>)
    {
        return v;
    }
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9,
        Err(_) => 0.0,
    }
}

/// Format one console line (with the trailing newline).
pub fn format_line(uptime: f64, msg: &str) -> String {
    format!("ipa-init: [{uptime:>9.3}] {msg}\n")
}

/// Write one line to the console; errors (no console) are ignored: PID 1 must not panic.
pub fn log(args: fmt::Arguments<'_>) {
    let line = format_line(uptime(), &args.to_string());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `say!("loaded {} modules", n)` — a console line.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::console::log(format_args!($($t)*)) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_format() {
        assert_eq!(super::format_line(1.5, "hello"), "ipa-init: [    1.500] hello\n");
        assert!(super::uptime() > 0.0);
    }
}

//! The operating-system pieces: CPU time and memory of processes from `/proc`, the whole machine's CPU
//! from `/proc/stat`, source addresses for outgoing sockets (`IP_BIND_ADDRESS_NO_PORT`), the
//! descriptor limit, and killing a process for the reconnect storm.
//!
//! On one machine the load generator's CPU is part of every figure, so the report puts its own CPU next to
//! the server's: each process's `utime + stime` from `/proc/<pid>/stat` (clock ticks of
//! `USER_HZ` = 100 per second, fixed by the Linux ABI), its resident memory from `/proc/<pid>/status`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use serde::{Deserialize, Serialize};

/// Linux reports process times in `USER_HZ` ticks, 100 per second on every architecture's user ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU and memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// Peak resident set, KiB.
    pub hwm_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` when the process is gone.
pub fn sample_pid(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cpu_s = parse_stat_cpu(&stat)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_s,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// User + system seconds from the text of `/proc/<pid>/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 (index 0 here); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// CPU seconds of every process on the machine, by pid, with its command name: to name the processes
/// that competed with the run (on a shared machine, a compiler next to the benchmark changes every figure).
pub fn all_procs_cpu() -> std::collections::HashMap<u32, (String, f64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let name = stat
            .find('(')
            .zip(stat.rfind(')'))
            .map(|(a, b)| stat[a + 1..b].to_string())
            .unwrap_or_default();
        if let Some(cpu) = parse_stat_cpu(&stat) {
            out.insert(pid, (name, cpu));
        }
    }
    out
}

/// The machine's CPU counters from the first line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineCpu {
    pub user: u64,
    pub system: u64,
    pub softirq: u64,
    pub irq: u64,
    pub idle: u64,
    pub total: u64,
}

pub fn machine_cpu() -> Option<MachineCpu> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

pub fn parse_proc_stat(text: &str) -> Option<MachineCpu> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Some(MachineCpu {
        user: get(0) + get(1),
        system: get(2),
        idle: get(3) + get(4),
        irq: get(5),
        softirq: get(6),
        total,
    })
}

/// CPU use of the whole machine between two readings, as percent of one core (200 % = both of 2 cores).
pub fn machine_busy_pct(a: &MachineCpu, b: &MachineCpu, cores: usize, secs: f64) -> MachineBusy {
    let d = |x: u64, y: u64| y.saturating_sub(x) as f64 / TICKS_PER_SEC / secs.max(1e-9) * 100.0;
    let total = d(a.total, b.total);
    let idle = d(a.idle, b.idle);
    MachineBusy {
        cores,
        busy_pct: (total - idle).max(0.0),
        user_pct: d(a.user, b.user),
        system_pct: d(a.system, b.system),
        softirq_pct: d(a.softirq, b.softirq),
    }
}

/// The machine's CPU use over a window, in percent of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineBusy {
    pub cores: usize,
    pub busy_pct: f64,
    pub user_pct: f64,
    pub system_pct: f64,
    /// Network processing in softirq context: on loopback, the kernel's share of every frame.
    pub softirq_pct: f64,
}

/// The soft limit on open descriptors (the hard limit is 20000 on this platform and cannot be raised).
pub fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// Parses a source-address list: `127.0.0.2-127.0.0.9`, `10.0.0.5,10.0.0.6`, or a mix.
pub fn parse_source_ips(s: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse()?;
            let b: Ipv4Addr = b.trim().parse()?;
            let (a, b) = (u32::from(a), u32::from(b));
            anyhow::ensure!(
                a <= b && b - a < 65536,
                "source range {part} is empty or too large"
            );
            out.extend((a..=b).map(Ipv4Addr::from));
        } else {
            out.push(part.parse()?);
        }
    }
    anyhow::ensure!(!out.is_empty(), "empty source address list");
    Ok(out)
}

/// How many sockets one source address takes towards one server port when the load generator picks the
/// addresses itself: 70 % of half the ephemeral port range (9,881 for Linux's default 32768–60999), and at
/// least 1,000 (a range that small holds too few sockets per address for any real run).
/// `connect()` finds a free port by walking the range from a hashed offset, even ports first, in the
/// calling thread; the fuller the range, the longer each walk. A 100K-socket ramp at 4,000/s with 16.7K
/// sockets per address stalled the load generator's workers for up to 22 s (connect p99 22–24 s, and the
/// edge closed ~6K upgrades whose requests came after its 10 s handshake timeout); at 8.3K per address
/// the connect p99 was 39–40 ms (perf/edge.md, "The load generator's source addresses").
pub fn sockets_per_source() -> u64 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
            Some((it.next()??, it.next()??))
        });
    let (lo, hi) = range.unwrap_or((32768, 60999));
    per_source_of_range(lo, hi)
}

fn per_source_of_range(lo: u64, hi: u64) -> u64 {
    let ports = hi.saturating_sub(lo) + 1;
    let half = ports / 2;
    (half * 7 / 10).max(1000)
}

/// `n` loopback source addresses starting at 127.0.0.2 (the whole 127/8 is local on Linux).
pub fn loopback_sources(n: usize) -> Vec<Ipv4Addr> {
    (0..n as u32)
        .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i))
        .collect()
}

/// Tells the kernel not to reserve a port at `bind()` but at `connect()`, where it can reuse a port
/// for a different destination: without it, every bound socket holds one of the ~28K ephemeral ports
/// of its source address for itself.
#[allow(unsafe_code)]
pub fn set_bind_address_no_port(sock: &impl AsRawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the descriptor is an open socket borrowed for the duration of the call; the option value
    // points to a live c_int and its exact size is passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends SIGKILL to `pid`.
#[allow(unsafe_code)]
pub fn kill_pid(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid"))?;
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "pid must be positive",
        ));
    }
    // SAFETY: kill(2) takes plain integers; a positive pid addresses exactly one process.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `addr` is on this machine's loopback (where source addresses 127.0.0.2… can be used).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Basic facts about this machine for the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MachineInfo {
    pub cores: usize,
    pub kernel: String,
    pub cpu_model: String,
    pub mem_total_kib: u64,
    pub hostname: String,
}

pub fn machine_info() -> MachineInfo {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    MachineInfo {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default(),
        mem_total_kib: meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_fields_after_the_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 50";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        let me = sample_pid(std::process::id()).unwrap();
        assert!(me.rss_kib > 0);
    }

    #[test]
    fn proc_stat_first_line() {
        let t = "cpu  100 5 50 1000 10 1 20 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        let c = parse_proc_stat(t).unwrap();
        assert_eq!(
            (c.user, c.system, c.idle, c.softirq, c.total),
            (105, 50, 1010, 20, 1186)
        );
        let later = MachineCpu {
            total: c.total + 200,
            idle: c.idle + 100,
            softirq: c.softirq + 10,
            ..c
        };
        let b = machine_busy_pct(&c, &later, 2, 1.0);
        assert!(
            (b.busy_pct - 100.0).abs() < 1e-9 && (b.softirq_pct - 10.0).abs() < 1e-9,
            "{b:?}"
        );
    }

    #[test]
    fn source_lists_and_ranges() {
        let v = parse_source_ips("127.0.0.2-127.0.0.4, 10.1.1.1").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3], Ipv4Addr::new(10, 1, 1, 1));
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
        assert_eq!(loopback_sources(3)[2], Ipv4Addr::new(127, 0, 0, 4));
    }

    #[test]
    fn a_source_address_takes_at_most_70_percent_of_half_the_port_range() {
        assert_eq!(per_source_of_range(32768, 60999), 9881);
        assert_eq!(per_source_of_range(1024, 65535), 22579);
        assert_eq!(
            per_source_of_range(60000, 60010),
            1000,
            "a floor for tiny ranges"
        );
        assert!(sockets_per_source() >= 1000);
    }
}

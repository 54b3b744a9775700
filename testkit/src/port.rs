//! Picking a port for a new server: free now, its cluster bus port (+10000) free too, never 6379.
//!
//! Candidates come from below the kernel's ephemeral range (`ip_local_port_range`, usually 32768–60999)
//! with their bus port also below it, so an outgoing connection — tests open many — cannot take the
//! port between the check here and redis-server binding it. Other test processes can still race for
//! the same port; the server module retries on another port when redis-server reports
//! "Address already in use". Within one process a port is handed out at most once, so a test that
//! dropped its server can check that the port refuses connections without another test reusing it.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::HarnessError;

/// Redis Cluster's bus port is the client port plus this.
pub(crate) const BUS_PORT_OFFSET: u16 = 10000;

/// Lowest port handed out: well clear of 6379/16379 and other well-known services.
const LOWEST: u16 = 10000;
const RANDOM_TRIES: usize = 200;
const KERNEL_TRIES: usize = 200;

/// Ports handed out so far in this process, and the random state that picks the next one.
struct Picker {
    handed_out: HashSet<u16>,
    random: u64,
}

static PICKER: Mutex<Option<Picker>> = Mutex::new(None);

/// A port whose bus port is also free, not handed out before in this process.
pub(crate) fn pick_port() -> Result<u16, HarnessError> {
    let mut picker = PICKER.lock().unwrap_or_else(|p| p.into_inner());
    let picker = picker.get_or_insert_with(|| Picker {
        handed_out: HashSet::new(),
        // Different processes (cargo nextest runs one per test) start from different places.
        random: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32),
    });
    let ephemeral_low = ephemeral_range_start();
    let highest = ephemeral_low
        .saturating_sub(BUS_PORT_OFFSET)
        .min(u16::MAX - BUS_PORT_OFFSET);
    if highest > LOWEST + 1000 {
        for _ in 0..RANDOM_TRIES {
            let port =
                LOWEST + (splitmix64(&mut picker.random) % u64::from(highest - LOWEST)) as u16;
            if picker.is_new_and_free(port) {
                picker.handed_out.insert(port);
                return Ok(port);
            }
        }
    }
    // Unusual port ranges, or the range above is crowded: ask the kernel for candidates.
    for _ in 0..KERNEL_TRIES {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| HarnessError::NoFreePort(format!("binding 127.0.0.1:0 failed: {e}")))?
            .port();
        if (LOWEST..=u16::MAX - BUS_PORT_OFFSET).contains(&port) && picker.is_new_and_free(port) {
            picker.handed_out.insert(port);
            return Ok(port);
        }
    }
    Err(HarnessError::NoFreePort(format!(
        "no port P in {LOWEST}..={} with P and P+{BUS_PORT_OFFSET} both free \
         ({RANDOM_TRIES} random tries below the ephemeral range starting at {ephemeral_low}, \
         {KERNEL_TRIES} kernel-chosen ports)",
        u16::MAX - BUS_PORT_OFFSET
    )))
}

impl Picker {
    fn is_new_and_free(&self, port: u16) -> bool {
        !self.handed_out.contains(&port) && is_free(port) && is_free(port + BUS_PORT_OFFSET)
    }
}

fn is_free(port: u16) -> bool {
    // std sets SO_REUSEADDR on listeners, as redis-server does: a port in TIME_WAIT counts as free.
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

//! The egress and load model: the configured [`Limits`], why a session is
//! refused ([`Reason`]), and [`decide`], the pure decision from the measured
//! egress, the serving threads' load, the bit rate reserved and the new
//! session's own. Measuring and smoothing live in the parent module; this
//! one only compares.

/// Below this load the load/egress ratio is mostly noise (fixed costs,
/// other processes' CPU use): no egress capacity is inferred from it.
const ESTIMATE_ABOVE: f64 = 0.5;

/// The configured limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Most egress, bits per second; `None`: only the load limits.
    pub max_egress: Option<u64>,
    /// Share of time the serving threads may be awake; 1 or more turns the
    /// load check off.
    pub max_load: f64,
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It would take the egress over `max_egress`.
    Egress,
    /// The serving threads are (or would become) too busy.
    Load,
}

impl Reason {
    pub const ALL: [Reason; 2] = [Reason::Egress, Reason::Load];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Egress => "egress",
            Reason::Load => "load",
        }
    }
}

/// The decision for one new session, from what was measured: `egress` and
/// `reserved` in bits per second, `load` as a share of time, `session` the
/// new session's bit rate.
pub fn decide(
    limits: Limits,
    egress: f64,
    load: f64,
    reserved: u64,
    session: u64,
) -> Result<(), Reason> {
    let demand = egress + reserved as f64 + session as f64;
    if let Some(max_egress) = limits.max_egress
        && demand > max_egress as f64
    {
        return Err(Reason::Egress);
    }
    if limits.max_load < 1.0 {
        if load >= limits.max_load {
            return Err(Reason::Load);
        }
        if load >= ESTIMATE_ABOVE && egress > 0.0 && demand > egress * limits.max_load / load {
            return Err(Reason::Load);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 1_000_000;

    fn limits(max_egress: Option<u64>, max_load: f64) -> Limits {
        Limits {
            max_egress,
            max_load,
        }
    }
    #[test]
    fn egress_limit_counts_measured_reserved_and_the_new_session() {
        let l = limits(Some(10 * MBIT), 1.0);
        assert_eq!(decide(l, 4e6, 0.0, 3 * MBIT, 3 * MBIT), Ok(()));
        assert_eq!(
            decide(l, 4e6, 0.0, 3 * MBIT, 3 * MBIT + 1),
            Err(Reason::Egress)
        );
        assert_eq!(decide(l, 0.0, 0.0, 8 * MBIT, 3 * MBIT), Err(Reason::Egress));
        assert_eq!(decide(l, 8e6, 0.0, 0, 3 * MBIT), Err(Reason::Egress));
    }

    #[test]
    fn busy_threads_refuse_whatever_the_egress() {
        let l = limits(None, 0.9);
        assert_eq!(decide(l, 0.0, 0.9, 0, MBIT), Err(Reason::Load));
        assert_eq!(decide(l, 0.0, 0.89, 0, MBIT), Ok(()));
    }

    #[test]
    fn the_load_scales_the_egress_into_a_capacity() {
        let l = limits(None, 0.9);
        // 60% busy at 100 Mbit/s: room up to 150 Mbit/s.
        assert_eq!(decide(l, 100e6, 0.6, 40 * MBIT, 10 * MBIT), Ok(()));
        assert_eq!(
            decide(l, 100e6, 0.6, 45 * MBIT, 10 * MBIT),
            Err(Reason::Load)
        );
        // Below ESTIMATE_ABOVE the ratio is not trusted.
        assert_eq!(decide(l, 1e6, 0.45, 500 * MBIT, 10 * MBIT), Ok(()));
    }

    #[test]
    fn a_max_load_of_one_turns_the_load_check_off() {
        let l = limits(None, 1.0);
        assert_eq!(decide(l, 100e6, 1.0, 500 * MBIT, 10 * MBIT), Ok(()));
    }
}

//! The open-file limit and what it leaves for connections: raising the
//! soft `RLIMIT_NOFILE` to the hard limit at start ([`raise_descriptor_limit`])
//! and capping connections so that some descriptors stay free for files
//! ([`connection_cap`]). The one place the listener calls `getrlimit` and
//! `setrlimit`.

/// Connections the listener keeps open at most: `configured`, lowered so
/// that a quarter of the descriptor limit (at least 64) stays free for the
/// files the server opens (cached files, the store's reads, logs), and at
/// least 16. Each connection is one descriptor.
pub fn connection_cap(configured: usize, descriptor_limit: u64) -> u64 {
    let reserve = (descriptor_limit / 4).max(64);
    (configured as u64).min(descriptor_limit.saturating_sub(reserve).max(16))
}

/// Raises this process's soft limit of open files (`RLIMIT_NOFILE`) to its
/// hard limit, as a server holding one descriptor per connection needs
/// (distributions start processes at a soft 1024), and returns the soft
/// limit now in force (`u64::MAX` when unlimited).
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(
        unsafe_code,
        reason = "getrlimit and setrlimit only read and write the struct passed; rustix is built without its process module"
    )]
    // SAFETY: `limit` is a valid, writable `struct rlimit` for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            } else {
                tracing::warn!(
                    soft = limit.rlim_cur,
                    hard = limit.rlim_max,
                    "cannot raise the open-file limit to its hard limit"
                );
            }
        }
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur
    }
}

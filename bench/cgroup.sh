# CPU quotas for benchmarks, sourced by the scripts that confine processes:
# each confined process gets a cgroup of its own under one parent, with the
# same CPU quota per period. Works on cgroup v2 (`cpu.max`) and, where the
# machine still mounts the v1 hierarchy, on v1's cpu controller
# (`cpu.cfs_quota_us`, `cpu.cfs_period_us`), which enforce the same CFS
# bandwidth limit.
#
#   source bench/cgroup.sh
#   cpu_cgroup_init kinema-bench-$$ || { echo "skipped: $CPU_CGROUP_WHY"; ...; }
#   cpu_cgroup_confine edge-0 25000 100000 "$pid"   # 25 ms of CPU per 100 ms
#   cpu_cgroup_remove                                # also on exit
#
# Needs root. Every wait is bounded.

CPU_CGROUP=
CPU_CGROUP_VERSION=
CPU_CGROUP_WHY=

# cpu_cgroup_init NAME: creates the parent cgroup NAME; on failure returns 1
# with the reason in CPU_CGROUP_WHY.
cpu_cgroup_init() {
    local name=$1
    if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
        CPU_CGROUP=/sys/fs/cgroup/$name
        CPU_CGROUP_VERSION=2
        if ! mkdir "$CPU_CGROUP" 2>/dev/null; then
            CPU_CGROUP=
            CPU_CGROUP_WHY="cannot create a cgroup under /sys/fs/cgroup (run as root)"
            return 1
        fi
        if ! grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control; then
            echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
        fi
        if ! echo +cpu > "$CPU_CGROUP/cgroup.subtree_control" 2>/dev/null; then
            CPU_CGROUP_WHY="the cpu controller cannot be enabled under $CPU_CGROUP"
            cpu_cgroup_remove
            return 1
        fi
    elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
        CPU_CGROUP=/sys/fs/cgroup/cpu/$name
        CPU_CGROUP_VERSION=1
        if ! mkdir "$CPU_CGROUP" 2>/dev/null; then
            CPU_CGROUP=
            CPU_CGROUP_WHY="cannot create a cgroup under /sys/fs/cgroup/cpu (run as root)"
            return 1
        fi
    else
        CPU_CGROUP_WHY="neither cgroup v2 with the cpu controller nor v1's cpu controller is mounted"
        return 1
    fi
}

# cpu_cgroup_confine CHILD QUOTA_US PERIOD_US PID: PID (all its threads, and
# what it starts later) in a cgroup of its own with QUOTA_US of CPU time per
# PERIOD_US.
cpu_cgroup_confine() {
    local child=$CPU_CGROUP/$1 quota=$2 period=$3 pid=$4
    mkdir -p "$child"
    if [ "$CPU_CGROUP_VERSION" = 2 ]; then
        echo "$quota $period" > "$child/cpu.max"
    else
        echo "$period" > "$child/cpu.cfs_period_us"
        echo "$quota" > "$child/cpu.cfs_quota_us"
    fi
    echo "$pid" > "$child/cgroup.procs"
}

# cpu_cgroup_remove: removes the children and the parent (a killed process
# leaves its cgroup a moment later: a bounded retry).
cpu_cgroup_remove() {
    [ -n "$CPU_CGROUP" ] && [ -d "$CPU_CGROUP" ] || return 0
    local child tries=25
    while [ -d "$CPU_CGROUP" ] && [ $tries -gt 0 ]; do
        for child in "$CPU_CGROUP"/*/; do
            [ -d "$child" ] && rmdir "$child" 2>/dev/null || true
        done
        rmdir "$CPU_CGROUP" 2>/dev/null || { tries=$((tries - 1)); sleep 0.2; }
    done
    if [ -d "$CPU_CGROUP" ]; then
        echo "cgroup.sh: could not remove $CPU_CGROUP" >&2
    fi
    CPU_CGROUP=
}

"""How many CPUs this process may really use.

os.cpu_count() is the machine's count. In a container with a CPU limit on a big node that is, say,
64 for a job allowed 2: 64 decoder processes would share 2 CPUs and overrun the memory limit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """CPUs in this process's affinity mask, capped by its cgroup's CPU quota (rounded up)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup)
    return max(1, min(count, quota) if quota else count)


def cgroup_cpu_quota(cgroup: Path = CGROUP) -> int | None:
    """The CPU limit of the cgroup mounted at `cgroup` (v2, else v1), or None when unlimited."""
    try:
        limit, every = (cgroup / "cpu.max").read_text().split()[:2]  # "200000 100000" or "max ..."
        return None if limit == "max" else _ceil(int(limit), int(every))
    except (OSError, ValueError):
        pass
    try:
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())  # -1: unlimited
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return _ceil(quota, period)
    except (OSError, ValueError):
        return None


def _ceil(quota: int, period: int) -> int | None:
    return math.ceil(quota / period) if quota > 0 and period > 0 else None

"""The default number of decoders and inference threads follows the container's CPU limit."""

import os

from classify_batch.jobs.cpus import cgroup_cpu_quota, usable_cpus


def test_a_cgroup_v2_limit_is_rounded_up(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 2


def test_an_unlimited_cgroup_v2_has_no_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_a_cgroup_v1_limit_is_read_too(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_the_limit_caps_the_cpus_of_a_big_machine(tmp_path):
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert usable_cpus(tmp_path) == 1


def test_without_a_limit_every_cpu_of_the_affinity_mask_counts(tmp_path):
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))

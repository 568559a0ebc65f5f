"""Slurm on the controller and the GPU servers (`ops verify slurm`): daemons and munge."""

from __future__ import annotations


def is_controller(host) -> bool:  # noqa: ANN001
    return host.file("/etc/slurm/slurmdbd.conf").exists


def test_munge_key(host) -> None:  # noqa: ANN001
    key = host.file("/etc/munge/munge.key")
    assert key.exists
    assert (key.user, key.group, key.mode) == ("munge", "munge", 0o400)
    assert host.service("munge").is_running
    assert host.run("munge -n | unmunge").rc == 0


def test_daemons(host) -> None:  # noqa: ANN001
    wanted = ["slurmctld", "slurmdbd", "mariadb"] if is_controller(host) else ["slurmd"]
    for name in wanted:
        svc = host.service(name)
        assert svc.is_running and svc.is_enabled, name

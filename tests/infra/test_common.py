"""The `common` role on every host: packages, time sync, upgrades, SSH, journald, MOTD."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("package", ["ca-certificates", "curl", "git", "tmux", "rsync", "acl",
                                     "chrony", "unattended-upgrades"])
def test_base_packages(host, package: str) -> None:  # noqa: ANN001
    assert host.package(package).is_installed


def test_time_sync(host) -> None:  # noqa: ANN001
    chrony = host.service("chrony")
    assert chrony.is_enabled
    if host.file("/.dockerenv").exists:
        pytest.skip("a container: its clock is the host's")
    assert chrony.is_running


def test_unattended_upgrades_run_daily(host) -> None:  # noqa: ANN001
    conf = host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in conf


def test_ssh_is_hardened(host, inventory_vars) -> None:  # noqa: ANN001
    effective = host.check_output("sshd -T -C user=nobody,host=localhost,addr=127.0.0.1")
    settings = dict(line.split(" ", 1) for line in effective.splitlines() if " " in line)
    assert settings["permitrootlogin"] in ("without-password", "prohibit-password", "no")
    want = "yes" if inventory_vars.get("accounts_password_login") else "no"
    assert settings["passwordauthentication"] == want
    assert settings["permitemptypasswords"] == "no"
    assert host.service("ssh").is_running


def test_journald_is_capped(host) -> None:  # noqa: ANN001
    conf = host.file("/etc/systemd/journald.conf.d/10-course-ops.conf")
    assert conf.exists and "SystemMaxUse=" in conf.content_string


def test_motd_names_the_course(host, host_vars) -> None:  # noqa: ANN001
    motd = host.file("/etc/motd").content_string
    assert str(host_vars["course_name"]) in motd
    assert "NVIDIA GPU(s)" in motd


def test_no_reboot_pending(host) -> None:  # noqa: ANN001
    pending = host.file("/run/reboot-required")
    why = host.file("/run/reboot-required.pkgs").content_string if pending.exists else ""
    assert not pending.exists, f"reboot required ({why.strip() or 'see /run/reboot-required'})"


def test_no_systemd_unit_has_failed(host, host_vars) -> None:  # noqa: ANN001
    """A failed unit is a host in trouble ("degraded"); production hosts may name units
    that fail for reasons of their own in ``verify_ignore_failed_units``."""
    listed = host.check_output("systemctl list-units --failed --plain --no-legend --no-pager")
    failed = {line.split()[0] for line in listed.splitlines() if line.strip()}
    ignored = set(host_vars.get("verify_ignore_failed_units") or [])
    assert not failed - ignored, f"failed units: {', '.join(sorted(failed - ignored))}"

"""Slurm's controller (`ops verify slurm`): slurmdbd's secret config, node states, the
course QOS, and every roster pair's account with exactly its members."""

from __future__ import annotations

import pytest

from ops import roles
from ops.accounts.slurm import sacct_duration


def test_slurmdbd_config_is_secret(host) -> None:  # noqa: ANN001
    conf = host.file("/etc/slurm/slurmdbd.conf")
    assert (conf.user, conf.mode) == ("slurm", 0o600)


def test_nodes_are_idle(host) -> None:  # noqa: ANN001
    states = host.check_output("sinfo -h -N -o '%N %T'")
    bad = [ln for ln in states.splitlines() if ln.split()[1] not in ("idle", "mixed",
                                                                      "allocated")]
    assert states and not bad, states


def test_course_qos_caps_gpus_and_wall_time(host, inventory_vars) -> None:  # noqa: ANN001
    qos = str(roles.setting(inventory_vars, "slurm", "slurm_qos_name"))
    gpus = roles.setting(inventory_vars, "slurm", "slurm_pair_max_gpus")
    wall = sacct_duration(str(roles.setting(inventory_vars, "slurm", "slurm_max_time")))
    line = host.check_output(f"sacctmgr -nP show qos where name={qos} "
                             "format=name,maxtresperaccount,maxwall")
    assert line.split("|") == [qos, f"gres/gpu={gpus}", wall]


@pytest.fixture(scope="module")
def associations(host) -> dict[str, list[list[str]]]:  # noqa: ANN001
    """Every association (account, user, parent, QOS), read once: account -> its rows."""
    out: dict[str, list[list[str]]] = {}
    for line in host.check_output("sacctmgr -nP show assoc format=account,user,parentname,qos"
                                  ).splitlines():
        account, *rest = line.split("|")
        out.setdefault(account, []).append(rest)
    return out


def test_every_pair_has_its_account(associations, expected, pair_group,  # noqa: ANN001
                                    inventory_vars) -> None:  # noqa: ANN001
    qos = str(roles.setting(inventory_vars, "slurm", "slurm_qos_name"))
    rows = associations.get(pair_group, [])
    account = [r for r in rows if r[0] == ""]
    users = sorted(r[0] for r in rows if r[0])
    assert account, f"{pair_group} has no Slurm account"
    assert account[0][1] == expected.cfg.course_group
    assert qos in account[0][2].split(",")
    assert users == expected.members(pair_group)

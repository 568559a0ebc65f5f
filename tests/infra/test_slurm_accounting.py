"""Slurm's controller (`ops verify slurm`): slurmdbd's secret config, node states, the
course QOS, and every roster pair's account with exactly its members."""

from __future__ import annotations

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


def test_every_pair_has_its_account(host, expected, pair_group,  # noqa: ANN001
                                    inventory_vars) -> None:  # noqa: ANN001
    qos = str(roles.setting(inventory_vars, "slurm", "slurm_qos_name"))
    rows = host.check_output(f"sacctmgr -nP show assoc where account={pair_group} "
                             "format=user,parentname,qos").splitlines()
    account = [r for r in rows if r.split("|")[0] == ""]
    users = sorted(r.split("|")[0] for r in rows if r.split("|")[0])
    assert account and account[0].split("|")[1] == expected.cfg.course_group
    assert qos in account[0].split("|")[2].split(",")
    assert users == expected.members(pair_group)

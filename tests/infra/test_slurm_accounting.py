"""Slurm's controller (`ops verify slurm`): slurmdbd's secret config, node states, the
course QOS, every roster pair's account with exactly its members and its GPU budget, the
budgets' rules (no decay, never a killed job), privacy, and the usage tools."""

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
    for line in host.check_output("sacctmgr -nP show assoc "
                                  "format=account,user,parentname,qos,grptresmins"
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


def test_every_pair_has_its_gpu_budget(associations, expected, pair_group) -> None:  # noqa: ANN001
    account = [r for r in associations.get(pair_group, []) if r[0] == ""]
    assert account, f"{pair_group} has no Slurm account"
    have = [t for t in account[0][3].split(",") if t.startswith("gres/gpu=")]
    want = expected.gpu_minutes(pair_group)
    assert have == ([] if want is None else [f"gres/gpu={want}"])


@pytest.fixture(scope="module")
def slurm_config(host) -> dict[str, str]:  # noqa: ANN001
    """slurmctld's running configuration (``scontrol show config``), read once."""
    out = {}
    for line in host.check_output("scontrol show config").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def test_a_budget_is_for_the_semester_and_never_kills_a_job(slurm_config) -> None:  # noqa: ANN001
    # usage never decays nor resets by itself (a GrpTRESMins that refills is no budget) ...
    assert slurm_config["PriorityType"] == "priority/multifactor"
    assert slurm_config["PriorityDecayHalfLife"] == "00:00:00"
    assert slurm_config["PriorityUsageResetPeriod"] == "NONE"
    # ... and a job starts only when its whole time limit fits in what is left ("safe")
    enforce = slurm_config["AccountingStorageEnforce"].split(",")
    assert {"associations", "limits", "qos", "safe"} <= set(enforce)


def test_students_see_only_their_own_jobs_and_usage(host, slurm_config,  # noqa: ANN001
                                                    inventory_vars) -> None:  # noqa: ANN001
    want = set(roles.setting(inventory_vars, "slurm", "slurm_private_data"))
    assert {"jobs", "usage"} <= want
    assert set(slurm_config["PrivateData"].split(",")) >= want  # squeue, sshare
    dbd = host.check_output("sed -n 's/^PrivateData=//p' /etc/slurm/slurmdbd.conf")
    assert set(dbd.split(",")) == want  # sacct, sacctmgr


def test_the_staff_see_every_pairs_jobs(host, expected) -> None:  # noqa: ANN001
    coords = {}
    for line in host.check_output("sacctmgr -nP show user withcoord "
                                  "format=user,coordinators").splitlines():
        user, _, accounts = line.partition("|")
        coords[user] = set(accounts.split(",")) if accounts else set()
    course = expected.cfg.course_group
    staff = {n for n, m in expected.state.staff.items() if m.status == "active"}
    assert {u for u, a in coords.items() if course in a} == staff


def test_the_usage_tools_are_installed(host) -> None:  # noqa: ANN001
    module = host.file("/usr/local/lib/course-ops/course_usage.py")
    assert module.is_file and module.user == "root" and module.mode == 0o644
    tool = host.file("/usr/local/bin/course-usage")
    assert tool.is_file and tool.mode == 0o755
    assert host.service("course-usage-pairs.timer").is_running
    assert host.service("course-usage-pairs.timer").is_enabled


def test_each_pairs_budget_is_readable_by_its_members_only(host, pair_group) -> None:  # noqa: ANN001
    f = host.file(f"/var/lib/course-ops/pair-usage/{pair_group}.json")
    assert f.is_file, "course-usage-pairs has not run yet"
    assert (f.user, f.group, f.mode) == ("root", pair_group, 0o640)

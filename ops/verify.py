"""`ops verify`: run the testinfra specs of tests/infra/ against the inventory's hosts."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ops import REPO_ROOT, report, ssh
from ops import inventory as inv_mod
from ops import run as run_mod
from ops.errors import ExitCode, OpsError, UsageError

SPECS = REPO_ROOT / "tests" / "infra"
#: area (what `ops verify AREA` takes) -> its specs (tests/infra/test_<spec>.py), each with
#: the inventory groups it targets: the one list of areas (the CLI's help is made from it)
AREAS: dict[str, dict[str, tuple[str, ...]]] = {
    "accounts": {"accounts": ("slurm_controller", "gpu_servers")},
    "common": {"common": ("all",)},
    "gpu": {"gpu": ("gpu_servers",)},
    "gpu_servers": {"gpu_servers": ("gpu_servers",)},
    "slurm": {"slurm": ("slurm_controller", "gpu_servers"),
              "slurm_accounting": ("slurm_controller",)},
    "images": {"registry": ("registry",), "images": ("gpu_servers",)},
    "website": {"website": ("web",)},
    "hub": {"hub": ("hub",)},
    "student_env": {"student_env": ("gpu_servers", "slurm_controller")},
}
#: spec -> the inventory groups it targets
SPEC_GROUPS = {spec: groups for specs in AREAS.values() for spec, groups in specs.items()}
#: a spec's group that may be empty, and the group that stands in for it (the hub runs on
#: the slurm_controller unless the inventory has a hub group)
FALLBACK_GROUPS = {"hub": "slurm_controller"}


def _no_image_pushed(inventory_dir: Path) -> str | None:
    from ops.images import registry as reg

    if not reg.load_state(inventory_dir):
        return ("no course image has been pushed for this inventory yet "
                "(`ops images build`, then `ops images push`)")
    return None


#: spec -> why it cannot be checked yet (None: it can). A spec that cannot be checked is
#: never a green run of skips: its area asked for by name fails with NOT_CHECKED; in a run
#: of every area the spec is left out and listed as not checked.
PRECONDITIONS: dict[str, Callable[[Path], str | None]] = {
    "images": _no_image_pushed,
}


class NotChecked(OpsError):
    code = ExitCode.NOT_CHECKED


def targets(inv: inv_mod.Inventory, areas: list[str]) -> str:
    groups: list[str] = []
    for a in areas:
        wanted = [g if inv.groups.get(g) else FALLBACK_GROUPS.get(g, g) for g in SPEC_GROUPS[a]]
        groups += [g for g in wanted if g not in groups and inv.groups.get(g)]
    if not groups:
        raise UsageError(
            f"{inv.hosts_file}: no host in {', '.join(SPEC_GROUPS[areas[0]])}",
            hint="add hosts to those groups, or pass --hosts SPEC",
        )
    return ",".join(f"ansible://{g}" for g in groups)


#: at most this many pytest sessions check an inventory's hosts at once (more hosts: each
#: session takes several); a check waits on its host far more than it computes, so even a
#: 2-core machine runs the lab's three at once
MAX_SESSIONS = max(4, os.cpu_count() or 1)


def sessions(inv: inv_mod.Inventory, specs: list[str],
             limit: int = MAX_SESSIONS) -> list[dict[str, str]]:
    """The run split by host: the hosts the specs target, dealt in inventory order into at
    most ``limit`` sessions; each session gets every spec that targets one of its hosts, on
    those hosts only (as ``--ops-targets`` takes them). Every check of every host is in
    exactly one session; a spec's checks that run on no host are the first session's of
    that spec (see :func:`hostless_elsewhere`)."""
    hosts_of: dict[str, list[str]] = {}
    for spec in specs:
        wanted = [g if inv.groups.get(g) else FALLBACK_GROUPS.get(g, g)
                  for g in SPEC_GROUPS[spec]]
        hosts_of[spec] = [h.name for h in inv.hosts.values()
                          if any(h.name in inv.groups.get(g, ()) for g in wanted)]
    order = [h for h in inv.hosts if any(h in hs for hs in hosts_of.values())]
    buckets = [order[i::limit] for i in range(min(limit, len(order)))]
    out = []
    for bucket in buckets:
        targets = {spec: ",".join(f"ansible://{h}" for h in hs if h in bucket)
                   for spec, hs in hosts_of.items()}
        out.append({spec: t for spec, t in targets.items() if t})
    return out


def hostless_elsewhere(split: list[dict[str, str]]) -> list[list[str]]:
    """For each session of :func:`sessions`, the specs whose host-less checks (those that
    run here, on the control machine) another session runs already."""
    seen: set[str] = set()
    out = []
    for targets in split:
        out.append(sorted(s for s in targets if s in seen))
        seen.update(targets)
    return out


def pytest_argv(
    inventory_dir: Path,
    areas: list[str],
    hosts: str | dict[str, str],
    junit: Path,
    roster: Path | None,
    verbosity: int,
    ssh_config: Path,
    expect_gpus: int | None = None,
    inv: inv_mod.Inventory | None = None,
    hostless_done: list[str] | None = None,
) -> list[str]:
    """``inv``: the inventory, where it has a hosts.yml (the specs then read it, as
    Ansible's); without one only ``local://`` or ``ssh://`` hosts can be checked.
    ``hostless_done``: specs whose checks that run on no host are another session's."""
    inventory_dir = inventory_dir.resolve()
    argv = [
        sys.executable,
        "-m",
        "pytest",
        *(str(SPECS / f"test_{a}.py") for a in areas),
        # one host list for every spec, or each spec its own (one session for all)
        f"--hosts={hosts}" if isinstance(hosts, str) else f"--ops-targets={json.dumps(hosts)}",
        f"--ops-inventory={inventory_dir}",
        f"--ssh-config={ssh_config}",
        f"--junit-xml={junit}",
        "-p",
        "no:cacheprovider",
        # a development install's Hypothesis plugin costs a second at every session's end
        "-p",
        "no:hypothesispytest",
        "--rootdir",
        str(REPO_ROOT),
        "-o",
        "junit_family=xunit1",
    ]
    if inv is not None:
        argv.append(f"--ansible-inventory={inv.hosts_file}")
        local = all(h.startswith("local://") for h in
                    ([hosts] if isinstance(hosts, str) else hosts.values()))
        if not local and any(h.user != "root"
                                                    for h in inv.hosts.values()):
            argv.append("--sudo")  # the checks read shadow and act as students
    if roster:
        argv.append(f"--ops-roster={roster.resolve()}")
    if expect_gpus is not None:
        argv.append(f"--expect-gpus={expect_gpus}")
    if hostless_done:
        argv.append(f"--ops-hostless-elsewhere={','.join(hostless_done)}")
    argv += ["-qq"] if verbosity < 0 else ["-q"] if verbosity == 0 else ["-v"] * verbosity
    return argv


def verify(inventory_dir: Path, area: str | None, hosts: str | None, junit: Path | None,
           roster: Path | None = None, verbosity: int = 0, expect_gpus: int | None = None,
           not_checked: dict[str, str] | None = None, inv: inv_mod.Inventory | None = None,
           ) -> tuple[int, dict[str, report.HostResult]]:
    """Each area's spec against that area's groups (or ``hosts``); one summary for all.
    ``inv``: the inventory loaded already (None: the directory has no hosts.yml, and
    ``hosts`` says what to check).

    An area that cannot be checked yet (see :data:`PRECONDITIONS`) raises
    :class:`NotChecked` when asked for by name; in a run of every area it is left out and
    recorded in ``not_checked`` (area -> why)."""
    if area and area not in AREAS:
        raise UsageError(f"unknown area {area!r}", hint=f"choose one of: {', '.join(AREAS)}")
    areas = []
    for spec in (s for a in ([area] if area else list(AREAS)) for s in AREAS[a]):
        why = PRECONDITIONS[spec](inventory_dir) if spec in PRECONDITIONS else None
        if why and area:
            raise NotChecked(f"{area}: could not be checked: {why}",
                             hint="nothing was verified")
        if why:
            if not_checked is not None:
                not_checked[spec] = why
            continue
        areas.append(spec)
    code = 0
    with tempfile.TemporaryDirectory(prefix="ops-verify-") as tmp:
        # the inventory's hosts as every tool reaches them (ops.ssh), one SSH connection per
        # host reused by every check
        ssh_config = Path(tmp) / "ssh_config"
        ssh_config.write_text(inv.ssh_config(Path(tmp)) if inv else
                              ssh.config_text([], Path(tmp)))
        # one pytest session per host at once (the start-up, imports and the Ansible
        # inventory, is paid by each, but no check waits for another host's); the hosts
        # given (--hosts): one session checks every spec on them
        runs: list[tuple[list[str], str | dict[str, str], list[str]]] = []
        if areas and hosts:
            runs = [(areas, hosts, [])]
        elif areas and inv is None:
            raise UsageError(f"{inventory_dir / 'hosts.yml'}: no such file",
                             hint="pass --hosts SPEC (e.g. local://), or run `ops lab up`")
        elif areas and inv is not None:
            for a in areas:  # a spec whose groups are empty: a one-line usage error
                targets(inv, [a])
            split = sessions(inv, areas)
            runs = [(list(t), t, done) for t, done in zip(split, hostless_elsewhere(split),
                                                          strict=True)]
        outs = [Path(tmp) / f"verify-{i}.xml" for i in range(len(runs))]
        if runs:
            code = _run_sessions([
                pytest_argv(inventory_dir, specs, spec_hosts, xml, roster, verbosity,
                            ssh_config, expect_gpus, inv, done)
                for (specs, spec_hosts, done), xml in zip(runs, outs, strict=True)])
        merged = report.merge([o for o in outs if o.is_file()])
        if junit:
            junit = junit.resolve()
            merged.write(junit, encoding="utf-8", xml_declaration=True)
        summary = report.summarise_tree(merged)
    return code, summary


#: pytest's exit codes, the gravest first: what a run of several sessions exits with
#: (4 usage error, 3 internal error, 2 interrupted, 1 checks failed, 5 nothing collected)
_GRAVITY = (4, 3, 2, 1, 5)


def _run_sessions(argvs: list[list[str]]) -> int:
    """Run the sessions at once; each one's output (its failures, its skips) is printed
    after it ends, whole, in session order; the gravest exit code is the run's."""
    if len(argvs) == 1:
        return run_mod.run(argvs[0], cwd=REPO_ROOT)
    codes = []
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+", errors="replace"))
                for _ in argvs]
        procs = [run_mod.start(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
                 for argv, log in zip(argvs, logs, strict=True)]
        for proc, log in zip(procs, logs, strict=True):
            codes.append(proc.wait())
            log.seek(0)
            said = log.read()
            if said.strip():
                sys.stdout.write(said if said.endswith("\n") else said + "\n")
                sys.stdout.flush()
    return next((c for c in _GRAVITY if c in codes and (c != 5 or set(codes) == {5})), 0)

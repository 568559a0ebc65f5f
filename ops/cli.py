"""The `ops` command line: parses, then hands over to the domain modules."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from ops import __version__
from ops import verify as verify_mod
from ops.console import (
    Opts,
    Table,
    common,
    confirmed,
    err,
    out,
    pass_opts,
    styled,
)
from ops.errors import ExitCode, InputError, InputErrors, OpsError, UsageError
from ops.images import commands as _images

log = logging.getLogger("ops")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ops")
@common
@click.pass_context
def cli(ctx: click.Context) -> None:
    """course-ops: a GPU deep-learning course's infrastructure from one repository."""
    ctx.ensure_object(Opts)


# ---------------------------------------------------------------- lab
@cli.group()
def lab() -> None:
    """The local lab: ctl + gpu1 + gpu2 in Docker, the embedded default inventory."""


@lab.command("up")
@common
@pass_opts
def lab_up(opts: Opts) -> None:
    """Build (cached) and start the lab; write its hosts.yml. Safe to re-run."""
    from ops import lab as lab_mod

    nodes = lab_mod.up(opts.inventory, log=opts.say)
    _lab_table(nodes)


@lab.command("down")
@click.option("--image", is_flag=True, help="Also remove the cached base image.")
@common
@pass_opts
def lab_down(opts: Opts, image: bool) -> None:
    """Remove the lab: containers, volumes, network, keys, state. Leaves nothing behind."""
    from ops import lab as lab_mod

    hosts = opts.inventory / "hosts.yml"
    if hosts.is_file() and not hosts.read_text(errors="replace").startswith(lab_mod.HOSTS_HEADER):
        raise UsageError(f"{hosts} was not written by `ops lab up`: {opts.inventory} is not a "
                         "lab", hint="pass the lab's inventory with -i, or none")
    lab_mod.down(opts.inventory, remove_image=image, log=opts.say)
    state_dir = opts.inventory / "state"  # the lab's accounts die with its hosts
    if state_dir.is_dir():
        shutil.rmtree(state_dir)
    opts.say("the lab is gone")


@lab.command("status")
@common
@pass_opts
def lab_status(opts: Opts) -> None:
    """Each lab host, its SSH port and health."""
    from ops import lab as lab_mod

    nodes = lab_mod.status(opts.inventory)
    _lab_table(nodes)
    if not all(n.healthy for n in nodes):
        raise OpsError("the lab is not healthy", hint="run `ops lab up`")


def _lab_table(nodes: list[Any]) -> None:
    t = Table("host", "container", "ssh port", "state", "systemd", "ssh", "health")
    for n in nodes:
        t.add_row(
            n.name,
            n.container,
            str(n.port or "-"),
            n.state,
            n.systemd,
            "yes" if n.ssh else "no",
            styled("ok", "green") if n.healthy else styled("bad", "red"),
        )
    out.print(t)


# ---------------------------------------------------------------- roster
@cli.group()
def roster() -> None:
    """The class roster (CSV)."""


@roster.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common
@pass_opts
def roster_check(opts: Opts, file: Path, fmt: str) -> None:
    """Validate FILE offline and show each student's username and group."""
    from ops import roster as roster_mod
    from ops.accounts.model import AccountsConfig, allocate
    from ops.inventory import load_vars_only
    from ops.state import StateFile

    r = roster_mod.load(file)
    gv = load_vars_only(opts.inventory) if opts.inventory.is_dir() else {}
    gv.setdefault("accounts_expire_date", "2099-12-31")  # names and ids do not depend on it
    cfg = AccountsConfig.from_vars(gv, opts.inventory / "group_vars" / "all.yml")
    sf = StateFile(opts.inventory.resolve())
    st = allocate(r, sf.load(), cfg, sf.path)  # names as the inventory gives them; not saved
    students = [
        {
            "student_id": s.student_id,
            "username": st.students[s.student_id].username,
            "pair": st.pairs[s.pair].group,
        }
        for s in r.students
    ]
    pairs = [
        {
            "name": st.pairs[k].group,
            "members": [st.students[m.student_id].username for m in members],
        }
        for k, members in sorted(r.pairs().items(), key=lambda kv: st.pairs[kv[0]].gid)
    ]
    if fmt == "json":
        click.echo(json.dumps({"students": students, "pairs": pairs}, indent=2, ensure_ascii=False))
        return
    t = Table("student_id", "name", "username", "group")
    for s, row in zip(r.students, students, strict=True):
        t.add_row(s.student_id, f"{s.first_name} {s.last_name}", row["username"], row["pair"])
    if opts.verbose:
        out.print(t)
    n_pairs = sum(1 for p in pairs if len(p["members"]) == 2)
    out.print(
        f"{file}: OK, {len(students)} students in {len(pairs)} groups "
        f"({n_pairs} pairs, {len(pairs) - n_pairs} singles)"
    )


# ---------------------------------------------------------------- accounts
@cli.group()
def accounts() -> None:
    """Student accounts and pair spaces on slurm_controller and gpu_servers."""


roster_option = click.option(
    "--roster",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Roster CSV (default: accounts_roster in group_vars).",
)
mass_change_option = click.option(
    "--allow-mass-change", is_flag=True,
    help="Lock (or offboard) more students than accounts_max_leavers allows "
         "(default 10% of the class, at least 5): a roster that lost most of its rows "
         "is stopped otherwise.")


@accounts.command("plan")
@roster_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@common
@pass_opts
def accounts_plan(opts: Opts, roster: Path | None, fmt: str) -> None:
    """What sync would add, change, lock or remove, per host. Changes nothing."""
    from ops.accounts import sync as sync_mod
    from ops.errors import Refused

    ctx = sync_mod.load_context(opts.inv, roster)
    new_state, plans = sync_mod.plan(ctx, progress=opts.say)
    try:
        sync_mod.check_leavers(ctx, ctx.statefile.load(), new_state, allow=False)
    except Refused as exc:
        err.print(Text.assemble(("warning", "yellow"), f": {exc.message}; `ops accounts "
                                "sync` refuses it without --allow-mass-change"))
    changes = [c for p in plans.values() for c in p.changes]
    conflicts = [c for p in plans.values() for c in p.conflicts]
    if fmt == "json":
        click.echo(
            json.dumps(
                {"changes": [c.as_dict() for c in changes], "conflicts": conflicts}, indent=1
            )
        )
        return
    _plan_table(plans)
    for c in conflicts:
        err.print(Text.assemble(("conflict", "red"), " ", c))


def _plan_table(plans: dict[str, Any]) -> None:
    changes = [c for p in plans.values() for c in p.changes]
    if not changes:
        out.print("no change: every host matches the roster")
        return
    rows: dict[tuple[str, str, str, str], list[str]] = {}
    for c in changes:
        rows.setdefault((c.action, c.kind, c.subject, c.detail), []).append(c.host)
    t = Table("action", "kind", "subject", "detail", "hosts")
    every = len(plans)
    for (action, kind, subject, detail), hosts in rows.items():
        t.add_row(
            action,
            kind,
            subject,
            detail,
            "all" if len(hosts) == every and every > 1 else ",".join(hosts),
        )
    out.print(t)
    counts = Table("host", "add", "change", "lock", "unlock", "remove")
    for host, p in plans.items():
        n = Counter(c.action for c in p.changes)
        counts.add_row(host, *(str(n[a]) for a in ("add", "change", "lock", "unlock", "remove")))
    out.print(counts)


@accounts.command("sync")
@roster_option
@click.option("--check", is_flag=True, help="Only show the plan (as `accounts plan`).")
@mass_change_option
@common
@pass_opts
def accounts_sync(opts: Opts, roster: Path | None, check: bool, allow_mass_change: bool
                  ) -> None:
    """Show the plan, ask (unless -y), apply it; students who left are locked."""
    from ops.accounts import sync as sync_mod

    ctx = sync_mod.load_context(opts.inv, roster)
    if check:
        _plan_table(sync_mod.plan(ctx)[1])
        return

    def confirm(plans: dict[str, Any]) -> bool:
        if not opts.quiet:
            _plan_table(plans)
        return confirmed(opts, "Apply these changes?")

    plans = sync_mod.sync(ctx, confirm, progress=opts.say, allow_mass_change=allow_mass_change)
    n = sum(len(p.changes) for p in plans.values())
    out.print(
        "no change: every host matches the roster"
        if n == 0
        else f"applied {n} change(s) on {sum(1 for p in plans.values() if p.changes)} host(s)"
    )


@accounts.command("offboard")
@click.argument("students", nargs=-1)
@click.option(
    "--archive",
    "archive_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for the tar.gz archives and sha256 manifests.",
)
@click.option("--all", "everyone", is_flag=True, help="Everyone (semester end).")
@roster_option
@mass_change_option
@common
@pass_opts
def accounts_offboard(
    opts: Opts, students: tuple[str, ...], archive_dir: Path, everyone: bool,
    roster: Path | None, allow_mass_change: bool
) -> None:
    """Archive, check, then remove students who left (or STUDENT..., or --all)."""
    from ops.accounts import offboard as off_mod
    from ops.accounts import sync as sync_mod

    ctx = sync_mod.load_context(opts.inv, roster)

    def confirm(text: str) -> bool:
        out.print(text)
        return confirmed(opts, "Archive and remove them?")

    done = off_mod.offboard(ctx, archive_dir, list(students), everyone, confirm,
                            progress=opts.say, allow_mass_change=allow_mass_change)
    out.print(f"offboarded {len(done)} account(s); archives in {archive_dir}")


# ---------------------------------------------------------------- site
@cli.group()
def site() -> None:
    """The course website: build (Jekyll, no Ruby needed), preview, deploy, roll back,
    archive."""


ca_bundle_option = click.option(
    "--ca-bundle", type=click.Path(dir_okay=False, path_type=Path),
    help="Extra CA (PEM) for apt while the builder image is made (default: $OPS_CA_BUNDLE).")
site_source = click.argument("source", required=False,
                             type=click.Path(file_okay=False, path_type=Path))


@site.command("build")
@site_source
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("_site"),
              show_default=True, help="Where the built site goes: a new or empty directory, "
              "or one an earlier build made (emptied first). Not the source nor inside it.")
@ca_bundle_option
@common
@pass_opts
def site_build(opts: Opts, source: Path | None, out: Path, ca_bundle: Path | None) -> None:
    """Build SOURCE (default: the inventory's website_source) and check every link."""
    from ops import site as site_mod

    if source is None:
        source = site_mod.source_from_vars(opts.inventory)
    built = site_mod.build(source, out, ca_bundle=ca_bundle,
                           options=site_mod.build_options(opts.inventory), log=opts.say)
    files = [p for p in out.rglob("*") if p.is_file()]
    pages = sum(1 for p in files if p.suffix == ".html")
    size = sum(p.stat().st_size for p in files)
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in built.phases.items())
    click.echo(f"built {built.config.source} -> {out} ({pages} pages, {len(files)} files, "
               f"{size / 1e6:.1f} MB, baseurl {built.baseurl}, links ok) in "
               f"{built.seconds:.1f} s ({phases})")


@site.command("serve")
@site_source
@click.option("--port", type=click.IntRange(0, 65535), default=4000, show_default=True,
              help="Port on 127.0.0.1 (0: any free one).")
@ca_bundle_option
@common
@pass_opts
def site_serve(opts: Opts, source: Path | None, port: int, ca_bundle: Path | None) -> None:
    """Preview SOURCE on 127.0.0.1 with the same build, rebuilt when a file changes."""
    from ops import site as site_mod
    from ops.site import serve

    if source is None:
        source = site_mod.source_from_vars(opts.inventory)
    options = site_mod.build_options(opts.inventory)

    def build(out: Path) -> Any:
        return site_mod.build(source, out, ca_bundle=ca_bundle, options=options,
                              log=opts.say)

    serve.serve(source.resolve(), port=port, build=build, log=opts.say)


@site.command("deploy")
@site_source
@click.option("--keep", type=int, help="Releases kept per host (default: "
              "website_keep_releases, 5).")
@click.option("--force", is_flag=True, help="Upload even when the live release is the same.")
@ca_bundle_option
@common
@pass_opts
def site_deploy(opts: Opts, source: Path | None, keep: int | None, force: bool,
                ca_bundle: Path | None) -> None:
    """Build, upload a release to every web host, switch `current` to it atomically."""
    from ops import site as site_mod

    started = time.monotonic()
    _, results = site_mod.deploy_site(opts.inv, source, keep=keep, force=force,
                                      ca_bundle=ca_bundle, log=opts.say)
    _site_table(results)
    click.echo(f"done in {time.monotonic() - started:.1f} s")


@site.command("rollback")
@common
@pass_opts
def site_rollback(opts: Opts) -> None:
    """Swap every web host's `current` and `previous` (the release live before the last
    deploy); a second rollback undoes the first."""
    from ops import site as site_mod

    _site_table(site_mod.rollback(opts.inv, log=opts.say))


@site.command("archive")
@click.argument("semester")
@site_source
@click.option("--force", is_flag=True, help="Replace an archived semester (the old copy is "
              "kept on the host as a dot directory, not served).")
@ca_bundle_option
@common
@pass_opts
def site_archive(opts: Opts, semester: str, source: Path | None, force: bool,
                 ca_bundle: Path | None) -> None:
    """Publish the site, built for <baseurl>/semesters/SEMESTER/, under that path."""
    from ops import site as site_mod

    _site_table(site_mod.archive(opts.inv, semester, source, force=force,
                                 ca_bundle=ca_bundle, log=opts.say))


def _site_table(results: list[Any]) -> None:
    t = Table("host", "release", "result", "sent", "pruned", "seconds")
    for r in results:
        sent = "-" if r.sent is None else f"{r.sent.bytes / 1e6:.2f} MB ({r.sent.files} files)"
        t.add_row(r.host, r.release, r.action, sent, str(len(r.pruned)), f"{r.seconds:.1f}")
    out.print(t)


# ---------------------------------------------------------------- hub
@cli.group()
def hub() -> None:
    """The course's JupyterHub: servers as Slurm jobs in the course image."""


@hub.command("status")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@common
@pass_opts
def hub_status(opts: Opts, fmt: str) -> None:
    """The hub's URL and each running server: student, pair, job, node, profile, times."""
    from ops import hub as hub_mod

    url, found = hub_mod.status(opts.inv)
    if fmt == "json":
        click.echo(hub_mod.as_json(url, found))
        return
    out.print(f"hub: {url}")
    t = Table("student", "pair", "job", "node", "state", "profile", "started", "last activity")
    for s in found:
        t.add_row(s.student, s.pair, s.job, s.node, s.state, s.profile, s.started[:19],
                  s.last_activity[:19])
    out.print(t)
    out.print(f"{len(found)} server(s)")


# ---------------------------------------------------------------- usage
@cli.command("usage")
@click.option("--since", help="Start of the window, YYYY-MM-DD[THH:MM] on the controller's "
              "clock (default: semester_start in group_vars, else 120 days ago).")
@click.option("--until", default="now", show_default=True, help="End of the window.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a PNG: GPU-hours per pair against the budgets, and the GPU "
              "occupancy per day with the homework deadlines.")
@common
@pass_opts
def usage_cmd(opts: Opts, since: str | None, until: str, fmt: str, plot: Path | None) -> None:
    """GPU and CPU time per pair and per student, and each pair's budget used, from Slurm's
    accounting (one read of the controller). Changes nothing."""
    from ops import slurm_usage
    from ops import usage as usage_mod

    inv = opts.inv
    since = usage_mod.check_when("--since", since) if since else usage_mod.default_since(inv)
    until = usage_mod.check_when("--until", until)
    if plot is not None and not plot.parent.is_dir():
        raise InputError(plot, None, "its directory does not exist", hint="create it first")
    rep = usage_mod.read(inv, since, until)
    if plot is not None:
        slurm_usage.draw(slurm_usage.plot_series(rep, usage_mod.site_deadlines(inv)),
                         str(plot))
        opts.say(f"wrote {plot}")
    if fmt == "json":
        click.echo(json.dumps(rep, indent=1))
    elif fmt == "csv":
        click.echo(slurm_usage.to_csv(rep), nl=False)
    else:
        t = Table(*slurm_usage.TABLE_HEADER,
                  title=f"GPU usage {rep['since']} .. {rep['until']} ({rep['gpus']} GPUs)")
        for row in slurm_usage.table_rows(rep):
            t.add_row(*row)
        out.print(t)


# ---------------------------------------------------------------- verify / provision
@cli.command("verify")
@click.argument("area", required=False)
@click.option(
    "--hosts",
    "hosts",
    help="testinfra host spec overriding the inventory (e.g. local://, ssh://user@host).",
)
@click.option(
    "--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML here."
)
@click.option("--expect-gpus", type=click.IntRange(0), default=None,
              help="GPUs every target must show (default: the inventory's gpu_count). A "
                   "host expected to have GPUs fails its GPU checks without them.")
@roster_option
@common
@pass_opts
def verify_cmd(
    opts: Opts, area: str | None, hosts: str | None, junit: Path | None,
    expect_gpus: int | None, roster: Path | None
) -> None:
    _verify(opts, area, hosts, junit, roster, expect_gpus)


verify_cmd.help = ("Run the testinfra specs of AREA (default: every area) and summarise per "
                   f"host.\n\nAREA is one of: {', '.join(verify_mod.AREAS)}.")


def _verify(
    opts: Opts, area: str | None, hosts: str | None, junit: Path | None, roster: Path | None,
    expect_gpus: int | None = None,
) -> None:
    from ops.verify import verify

    opts.say(f"verifying {area or 'everything'}")
    not_checked: dict[str, str] = {}
    inv = opts.inv if (opts.inventory / "hosts.yml").is_file() else None
    code, summary = verify(
        opts.inventory, area, hosts, junit, roster, -1 if opts.quiet else opts.verbose,
        expect_gpus, not_checked, inv,
    )
    t = Table("host", "passed", "failed", "skipped")
    for host, r in summary.items():
        t.add_row(host, str(r.passed), styled(r.failed, "red") if r.failed else "0", str(r.skipped))
    out.print(t)
    for a, why in not_checked.items():
        err.print(Text.assemble(("not checked", "yellow"), f": {a}: {why}"))
    if code != 0:
        raise OpsError(f"verification failed (pytest exit {code})", hint="see the failures above")


@cli.command("provision", context_settings={"ignore_unknown_options": True})
@click.option("--check", is_flag=True, help="Show what would change; change nothing.")
@click.option("--diff", is_flag=True, help="Show file differences (Ansible --diff).")
@click.option("--limit", help="Only these hosts or groups (Ansible --limit).")
@click.option("--tags", help="Only these role tags (Ansible --tags).")
@click.option("--skip-machines", is_flag=True, help="Skip the Ansible phase.")
@click.option("--timings", is_flag=True,
              help="Print the seconds each phase and each Ansible role took (also at -v).")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@roster_option
@mass_change_option
@common
@pass_opts
def provision(opts: Opts, check: bool, diff: bool, limit: str | None, tags: str | None,
              skip_machines: bool, timings: bool, extra: tuple[str, ...], roster: Path | None,
              allow_mass_change: bool) -> None:
    """Bring every host in step: machines (Ansible), accounts (pyinfra), then verify.

    Arguments after `--` go to ansible-playbook unchanged.
    """
    from ops import provision as provision_mod

    req = provision_mod.Request(opts, opts.inv, check=check, diff=diff, limit=limit, tags=tags,
                                skip_machines=skip_machines, timings=timings, extra=extra,
                                roster=roster, allow_mass_change=allow_mass_change)
    provision_mod.provision(req, show_plan=_plan_table,
                            verify=lambda: _verify(opts, None, None, None, roster),
                            confirm=lambda question: confirmed(opts, question))


def main() -> None:
    try:
        cli.main(standalone_mode=False, prog_name="ops")
    except click.exceptions.Abort:
        err.print("ops: interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except KeyboardInterrupt:
        err.print("ops: interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except OpsError as exc:
        _show_traceback()
        if isinstance(exc, InputErrors):
            for line in exc.lines():
                err.print(f"ops: error: {line}")
        else:
            err.print(f"ops: error: {exc}")
        sys.exit(exc.code)
    except Exception as exc:  # a bug: one line, the traceback at -vv
        _show_traceback()
        err.print(
            f"ops: internal error: {type(exc).__name__}: {exc}; run again with -vv and "
            "report the traceback",
        )
        sys.exit(ExitCode.FAILED)
    sys.exit(ExitCode.OK)


def _show_traceback() -> None:
    opts = Opts()
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        opts = ctx.find_object(Opts) or opts
    if opts.verbose >= 2 or any(a.startswith("-vv") for a in sys.argv[1:]):
        err.print_exception()


# ---------------------------------------------------------------- images
cli.add_command(_images.images)  # defined in ops/images/commands.py

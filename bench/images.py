"""Benchmark: building the course image, against a cold build in the same run.

Figures, for one variant (default cpu), the wheelhouse filled beforehand (downloads are
not timed; the base image is made first if missing and timed on its own):
  cold build          every layer built (Docker's cache off): the baseline
  no-change rebuild   `ops images build` again, the whole CLI: target <= 5 s
  one pin changed     tqdm moved to another release in a copy of images/course, built
                      with the cache: target <= 40% of the cold build
  size                of the image and of each layer; the other variant's when built here

With --updates, the update loop's figures instead (issue 16), in one run:
  outdated, warm      `ops images outdated` on images/course, both variants and the base,
                      once to warm the caches (uv's, the base's bootstrap), then timed:
                      target <= 10 s
  cold build          the tiny test image (tests/images/tiny), every layer built: the baseline
  update of one pin   `ops images update` (the whole CLI: the check, the re-lock, the rebuild
                      of that slice's layer and those after it, the image's tests) after a
                      pure-Python package gets a newer release on a package index on
                      127.0.0.1 (pypiserver): target <= 25% of the cold build
  update, no change   `ops images update` again: nothing outdated, nothing built
The update is measured on the tiny image by default: a cold build of the course image (torch
and the rest, about 3 GB, a full wheelhouse) takes minutes on a 2-core machine. --course adds
it at real size: a copy of images/course whose lock has tqdm at an older release, built cold
(the baseline), then `ops images update --package tqdm` against PyPI. Each update's progress
lines are printed with their times, so the output says where the update's time goes.

    python bench/images.py [--variant cpu] [--wheelhouse DIR]
    python bench/images.py --updates [--course] [--find-links DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ops import engine  # noqa: E402
from ops.images import build as build_mod  # noqa: E402
from ops.images import spec as spec_mod  # noqa: E402
from ops.images import wheelhouse as wh  # noqa: E402
from ops.inventory import load_vars_only  # noqa: E402

PACKAGE = "tqdm"


def quiet(_: str) -> None:
    pass


def other_release(wheelhouse: Path, version: str) -> tuple[str, str]:
    """Another release of PACKAGE: its version and the sha256 of its wheel."""
    with tempfile.TemporaryDirectory() as tmp:
        for candidate in ("4.66.5", "4.66.4", "4.67.0", "4.67.1"):
            if candidate == version:
                continue
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 "--only-binary=:all:", "-d", tmp, f"{PACKAGE}=={candidate}"],
                capture_output=True, text=True, check=False)
            wheels = list(Path(tmp).glob("*.whl"))
            if done.returncode == 0 and wheels:
                shutil.copy(wheels[0], wheelhouse)
                return candidate, wh._sha256(wheels[0])
    raise SystemExit(f"could not download another release of {PACKAGE}")


def repin(lock_file: Path, old_version: str, version: str, sha256: str) -> None:
    """PACKAGE at ``version`` (one hash) in a lock file, in place of ``old_version``."""
    block = re.compile(rf"^{PACKAGE}=={re.escape(old_version)} \\\n(    --hash=\S+ ?\\?\n)+",
                       re.M)
    text, n = block.subn(f"{PACKAGE}=={version} \\\n    --hash={sha256}\n",
                         lock_file.read_text())
    assert n == 1, "the pin was not found in the lock"
    lock_file.write_text(text)


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def ops_cli(*args: str, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,),
            phases: list[tuple[float, str]] | None = None,
            ) -> tuple[float, subprocess.CompletedProcess[str]]:
    """One `ops ...` run, as CI runs it: its wall time and its result; ``phases`` gets each
    progress line (stderr's "> ...") with the second it came at."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "ops", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    err: list[str] = []

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err.append(line)
            if phases is not None and line.startswith("> "):
                phases.append((time.monotonic() - t0, line[2:].strip()))

    reader = threading.Thread(target=read_err)
    reader.start()
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    code = proc.wait()
    reader.join()
    seconds = time.monotonic() - t0
    done = subprocess.CompletedProcess(proc.args, code, stdout, "".join(err))
    if code not in ok:
        raise SystemExit(f"ops {' '.join(args)} exited {code}:\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, done


def _until_tests_row(phases: list[tuple[float, str]], total: float,
                     cold: float) -> list[tuple[str, float, str, str]]:
    at = until_tests(phases)
    if at is None:
        return []
    return [("  of which check, re-lock, rebuild (until the tests)", at, f"{at / cold:.1%}",
             f"(the image's tests: the other {total - at:.1f} s)")]


def print_phases(what: str, phases: list[tuple[float, str]], total: float) -> None:
    """Where an `ops` run's time went: each progress line and the seconds until the next."""
    print(f"\n{what}: its progress lines, each with the seconds until the next")
    for (at, line), nxt in zip(phases, [*(a for a, _ in phases[1:]), total], strict=True):
        print(f"  {at:7.1f} +{nxt - at:6.1f}  {line[:96]}")


def _torch_links(given: Path | None) -> list[str]:
    """--find-links for torch's CPU build: the option, $OPS_FIND_LINKS, else /opt/wheels."""
    if given is not None:
        return ["--find-links", str(given)]
    if os.environ.get("OPS_FIND_LINKS"):
        return []  # ops reads it
    return ["--find-links", "/opt/wheels"] if Path("/opt/wheels").is_dir() else []


def _tiny_tools(into: Path, wheelhouse: Path) -> None:
    """pytest and its requirements for the tiny image: the wheelhouse's, else PyPI's."""
    from tests.lab import pkgindex

    try:
        pkgindex.copy_wheels(wheelhouse, ["pytest", "pluggy", "iniconfig", "packaging",
                                          "pygments"], into)
    except FileNotFoundError:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                        "--python-version", "3.11", "--dest", str(into), "pytest"], check=True)


def until_tests(phases: list[tuple[float, str]]) -> float | None:
    """When an update's image tests started (its check, re-lock and rebuild were done)."""
    return next((at for at, line in phases if line.startswith("running the image's tests")),
                None)


def updates(args: argparse.Namespace) -> None:
    """The update loop's figures (see the module's docstring)."""
    import docker

    from tests.lab import pkgindex

    rows: list[tuple[str, float, str, str]] = []
    links = _torch_links(args.find_links)
    print("outdated on images/course (both variants and the base), warming the caches ...",
          flush=True)
    first, _ = ops_cli("images", "outdated", *links, ok=(0, 9))
    print(f"  first run {first:.1f} s", flush=True)
    runs = [ops_cli("images", "outdated", *links, ok=(0, 9)) for _ in range(3)]
    warm = min(t for t, _ in runs)
    said = "something outdated (exit 9)" if runs[0][1].returncode == 9 else "nothing outdated"
    rows.append(("outdated, warm (cpu + cuda + base), best of 3", warm, "",
                 f"<= 10 s: {'met' if warm <= 10 else 'MISSED'}  ({said}; runs "
                 f"{', '.join(f'{t:.1f}' for t, _ in runs)} s; first {first:.1f} s)"))

    client = docker.from_env()
    tiny_phases: list[tuple[float, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-updates-") as tmp:
        root = Path(tmp)
        packages = root / "packages"
        pkgindex.make_wheel(packages, "courseops-demo", "1.0")
        pkgindex.make_wheel(packages, "courseops-extra", "1.0")
        _tiny_tools(packages, args.wheelhouse)
        image = root / "tiny"
        shutil.copytree(REPO / "tests" / "images" / "tiny", image,
                        ignore=shutil.ignore_patterns("build", "lock"))
        repository = f"course-ops/course-tiny-bench-{os.getpid()}"
        yml = image / "image.yml"
        yml.write_text(yml.read_text().replace("repository: course-ops/course-tiny",
                                               f"repository: {repository}"))
        # a wheelhouse port of this run's own (the fixed one may be another checkout's, and
        # a port that differs between the cold build and the update is a cache miss)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            wh.PORT = int(sock.getsockname()[1])
        with pkgindex.serve(packages) as url:
            env = {**os.environ, "OPS_INDEX_URL": url, "OPS_WHEELHOUSE_PORT": str(wh.PORT)}
            try:
                print("tiny image: locking (Debian, Python) and making its base ...",
                      flush=True)
                ops_cli("images", "lock", "--debian", "--image", str(image), env=env)
                ops_cli("images", "lock", "--image", str(image), env=env)
                spec = spec_mod.load(image)
                variant = spec.variant("test")
                p = build_mod.prepare(client, spec, variant, cuda=None, log=quiet)
                print(f"cold build of {p.ref} (no layer cache) ...", flush=True)
                cold = build_mod.build(client, p, wheelhouse=packages, offline=True,
                                       force=True, nocache=True, log=quiet)
                rows.append(("cold build, tiny image (baseline)", cold.seconds, "100%", ""))
                pkgindex.make_wheel(packages, "courseops-demo", "2.0")
                print("courseops-demo 2.0 on the index; ops images update ...", flush=True)
                upd, done = ops_cli("images", "update", "--image", str(image),
                                    "--wheelhouse", str(packages), env=env,
                                    phases=tiny_phases)
                text = done.stdout
                assert "| test | courseops-demo | 1.0 | 2.0 | update |" in text, text
                assert "tests: passed" in text, text
                layers = next((ln[2:] for ln in text.splitlines()
                               if ln.startswith("- layers:")), "")
                rows.append(("update of one pin (courseops-demo), whole CLI", upd,
                             f"{upd / cold.seconds:.1%}",
                             f"<= 25%: {'met' if upd <= 0.25 * cold.seconds else 'MISSED'}"
                             f"  ({layers})"))
                rows += _until_tests_row(tiny_phases, upd, cold.seconds)
                again, done = ops_cli("images", "update", "--image", str(image),
                                      "--wheelhouse", str(packages), env=env)
                assert "Nothing is outdated" in done.stdout, done.stdout
                rows.append(("update again (nothing outdated)", again,
                             f"{again / cold.seconds:.1%}", ""))
            finally:
                for i in client.images.list(repository):
                    for t in i.tags:
                        with contextlib.suppress(docker.errors.APIError):
                            client.images.remove(t)
    course_phases: list[tuple[float, str]] = []
    if args.course:
        rows += update_course(args, client, course_phases)
    print()
    if args.course:
        print("update figures on the tiny test image (tests/images/tiny) and on the course")
        print(f"image's {args.variant} variant (real size), each against its own cold build")
    else:
        print("update figures on the TINY TEST IMAGE (tests/images/tiny), not the course image:")
        print("a cold build of the course image is too slow for this machine (see the "
              "docstring; --course runs it)")
    print(f"{'figure':<52}{'seconds':>9}{'of cold':>9}  target")
    for what, seconds, ratio, target in rows:
        print(f"{what:<52}{seconds:>9.1f}{ratio:>9}  {target}")
    print_phases("update of one pin, tiny image", tiny_phases,
                 next(r[1] for r in rows if r[0].startswith("update of one pin")))
    if course_phases:
        print_phases(f"update of one pin, course image {args.variant}", course_phases,
                     [r for r in rows if r[0].startswith("update of one pin")][-1][1])


def update_course(args: argparse.Namespace, client: Any, phases: list[tuple[float, str]],
                  ) -> list[tuple[str, float, str, str]]:
    """The course image's variant: a copy whose lock has PACKAGE at an older release is
    built cold (the baseline, and the image the update starts from), then `ops images
    update --package PACKAGE` moves it to the newest allowed release from PyPI."""
    import docker

    cuda = load_vars_only(args.inventory).get("course_image_cuda")
    spec = spec_mod.load()
    variant = spec.variant(args.variant)
    links = _torch_links(args.find_links)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-update-course-") as tmp:
        copy = Path(tmp) / "course"
        shutil.copytree(spec.dir, copy, ignore=shutil.ignore_patterns("build"))
        repository = f"course-ops/course-bench-{os.getpid()}"
        yml = copy / "image.yml"
        yml.write_text(yml.read_text().replace(f"repository: {spec.repository}",
                                               f"repository: {repository}"))
        lock_file = copy / "lock" / f"{args.variant}.txt"
        old = spec_mod.parse_lock(lock_file).packages[PACKAGE]
        older, older_hash = other_release(args.wheelhouse, old.version)
        repin(lock_file, old.version, older, older_hash)
        spec2 = spec_mod.load(copy)
        p = build_mod.prepare(client, spec2, spec2.variant(args.variant), cuda=str(cuda),
                              log=print)
        wh.fill(args.wheelhouse, p.lock, print, python=spec.python, platform=spec.platform,
                sources=p.sources)
        try:
            print(f"cold build of {p.ref} ({PACKAGE} {older}, no layer cache) ...", flush=True)
            cold = build_mod.build(client, p, wheelhouse=args.wheelhouse, offline=True,
                                   force=True, nocache=True, log=quiet)
            print(f"  {cold.seconds:.1f} s, {cold.steps} steps", flush=True)
            rows.append((f"cold build, course image {variant.name} (baseline)", cold.seconds,
                         "100%", ""))
            print(f"ops images update --package {PACKAGE} ...", flush=True)
            upd, done = ops_cli("-i", str(args.inventory), "images", "update", "--image",
                                str(copy), "--variant", args.variant, "--package", PACKAGE,
                                "--wheelhouse", str(args.wheelhouse), *links,
                                env={**os.environ, "OPS_WHEELHOUSE_PORT": str(wh.PORT)},
                                phases=phases)
            out = done.stdout
            moved = next((ln for ln in out.splitlines() if f"| {PACKAGE} |" in ln), "")
            assert moved and "tests: passed" in out, out
            layers = next((ln[2:] for ln in out.splitlines() if ln.startswith("- layers:")), "")
            rows.append((f"update of one pin ({PACKAGE} {older} -> newest), whole CLI", upd,
                         f"{upd / cold.seconds:.1%}",
                         f"<= 25%: {'met' if upd <= 0.25 * cold.seconds else 'MISSED'}"
                         f"  ({layers[:90]})"))
            rows += _until_tests_row(phases, upd, cold.seconds)
        finally:
            for i in client.images.list(repository):
                for t in i.tags:
                    with contextlib.suppress(docker.errors.APIError):
                        client.images.remove(t)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", action="store_true",
                    help="the update loop's figures (outdated, update of one pin) instead")
    ap.add_argument("--course", action="store_true",
                    help="with --updates: also the update on the course image's variant, "
                         "against its own cold build (real size: minutes, GBs)")
    ap.add_argument("--find-links", type=Path, default=None,
                    help="torch's CPU wheel, for --updates (default: $OPS_FIND_LINKS, else "
                         "/opt/wheels)")
    ap.add_argument("--variant", default="cpu")
    ap.add_argument("--wheelhouse", type=Path,
                    default=Path(os.environ.get("OPS_WHEELHOUSE",
                                                Path.home() / ".cache/course-ops/wheelhouse")))
    ap.add_argument("-i", "--inventory", type=Path, default=REPO / "inventory" / "lab")
    args = ap.parse_args()
    if args.updates:
        updates(args)
        return
    cuda = load_vars_only(args.inventory).get("course_image_cuda")
    client = engine.client()
    spec = spec_mod.load()
    variant = spec.variant(args.variant)

    t0 = time.monotonic()
    p = build_mod.prepare(client, spec, variant, cuda=str(cuda), log=print)
    base_seconds = time.monotonic() - t0
    wh.fill(args.wheelhouse, p.lock, print, python=spec.python, platform=spec.platform,
            sources=p.sources)

    print(f"cold build of {p.ref} (no layer cache) ...", flush=True)
    cold = build_mod.build(client, p, wheelhouse=args.wheelhouse, offline=True, force=True,
                           nocache=True, log=quiet)
    print(f"  {cold.seconds:.1f} s, {cold.steps} steps", flush=True)

    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ops", "-i", str(args.inventory), "images",
                           "build", "--variant", args.variant, "--wheelhouse",
                           str(args.wheelhouse), "--offline"],
                          capture_output=True, text=True, cwd=REPO, check=True)
    nochange = time.monotonic() - t0
    assert "up to date" in done.stderr + done.stdout, done.stderr

    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        copy = Path(tmp) / "course"
        shutil.copytree(spec.dir, copy, ignore=shutil.ignore_patterns("build"))
        lock_file = copy / "lock" / f"{args.variant}.txt"
        old = p.lock.packages[PACKAGE]
        new_version, new_hash = other_release(args.wheelhouse, old.version)
        repin(lock_file, old.version, new_version, new_hash)
        spec2 = spec_mod.load(copy)
        lock2 = spec_mod.parse_lock(lock_file)
        # the copy's files (and tag) differ only by the changed pin's layer slice
        ctx = spec_mod.context(spec2, variant, lock2, base=p.base, base_id=p.base_id)
        p2 = build_mod.Prepared(spec2, variant, lock2, p.base, p.base_id, ctx.files,
                                ctx.content_hash, ctx.tag, p.sources)
        print(f"rebuild after {PACKAGE} {old.version} -> {new_version} ...", flush=True)
        onepin = build_mod.build(client, p2, wheelhouse=args.wheelhouse, offline=True,
                                 log=quiet)
        client.images.remove(p2.ref)
        client.images.get(p.ref).tag(spec.repository, variant.name)  # the alias back

    ratio_nochange = nochange / cold.seconds
    ratio_onepin = onepin.seconds / cold.seconds
    print()
    print(f"{'figure':<44}{'seconds':>10}{'of cold':>10}  target")
    if base_seconds > 5:
        print(f"{'base image (debootstrap), once':<44}{base_seconds:>10.1f}{'':>10}")
    print(f"{'cold build (baseline)':<44}{cold.seconds:>10.1f}{'100%':>10}")
    print(f"{'no-change rebuild (ops images build)':<44}{nochange:>10.1f}"
          f"{ratio_nochange:>10.1%}  <= 5 s: {'met' if nochange <= 5 else 'MISSED'}")
    print(f"{f'one pin changed ({PACKAGE}), cached layers':<44}{onepin.seconds:>10.1f}"
          f"{ratio_onepin:>10.1%}  <= 40%: {'met' if ratio_onepin <= 0.4 else 'MISSED'}"
          f"  ({onepin.cached_steps} of {onepin.steps} steps from cache)")
    print()
    for v in spec.variants.values():
        tags = [t for t in client.images.list(spec.repository)
                if f"{spec.repository}:{v.name}" in t.tags]
        if not tags:
            print(f"{v.name}: not built on this machine")
            continue
        image = tags[0]
        print(f"{v.name}: {mb(image.attrs['Size'])} ({image.tags[0]})")
        for size, what in build_mod.layer_sizes(client, image.id)[:8]:
            print(f"  {mb(size):>10}  {what}")


if __name__ == "__main__":
    main()

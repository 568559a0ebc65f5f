"""Benchmark: the course site at real size (3,000 files, 300 MB) built and deployed on a
provisioned lab, each figure against the whole-site tarball upload of before, measured in
the same run on the same build.

Figures, against the lab's web host (ctl):
- build: Jekyll in the builder image (the image exists), the static semesters, the link
  check and the content hash;
- first deploy: rsync of the whole site into a new release, then the `current` switch;
- one-page deploy: one lecture changed, rebuilt, deployed: bytes sent and seconds (targets:
  at most 1% of the site's bytes, at most 5 s for the deploy after the build);
- no-change deploy: nothing sent, "up to date";
- the baseline, for each: the gzipped tar of the whole build made in memory and unpacked on
  the host over the same ssh (what `ops site deploy` did before), bytes and seconds, and
  the memory it held.
At the end the example site is deployed again, as `ops provision` left it. The big site
needs jemoji skipped and its folder without index accepted: the benchmark writes them into
the inventory's group_vars/web.yml (only if that file does not exist) and removes it after.

    python bench/site.py [-i inventory/lab]   (a lab after `ops provision`)
"""

from __future__ import annotations

import argparse
import io
import resource
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ops import site, ssh  # noqa: E402
from ops.inventory import Host, load  # noqa: E402
from ops.site import releases, sample  # noqa: E402

EXAMPLE = REPO / "examples" / "course-site"
TARGET_ONE_PAGE_S = 5.0
TARGET_ONE_PAGE_SHARE = 0.01
BASELINE_DIR = "/tmp/course-ops-bench-tarball"


def tarball(out: Path) -> bytes:
    """The whole built site as one gzipped tar in memory: the upload of before."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(out.rglob("*")):
            rel = path.relative_to(out).as_posix()
            if rel != releases.BUILD_MARKER:
                tar.add(path, arcname=rel, recursive=False)
    return buf.getvalue()


def baseline(host: Host, out: Path) -> tuple[float, int]:
    """Seconds and bytes of the tarball upload: made in memory, unpacked on the host."""
    t0 = time.monotonic()
    data = tarball(out)
    script = (f"set -eu; rm -rf {BASELINE_DIR}; mkdir -p {BASELINE_DIR}; "
              f"tar -xzf - -C {BASELINE_DIR} --no-same-owner; rm -rf {BASELINE_DIR}")
    subprocess.run(ssh.argv(host.reach, script), input=data, check=True,
                   capture_output=True, timeout=600)
    return time.monotonic() - t0, len(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--inventory", type=Path, default=REPO / "inventory" / "lab")
    args = ap.parse_args()
    inv = args.inventory.resolve()
    web = load(inv).hosts_in("web")
    host = web[0]
    print(f"web host: {host.name}")
    web_yml = inv / "group_vars" / "web.yml"
    if web_yml.exists():
        print(f"{web_yml} exists: the benchmark writes its settings there; move it away")
        return 2
    web_yml.write_text(yaml.safe_dump({"website_skip_plugins": sample.SKIP_PLUGINS,
                                       "website_link_check_allow": sample.ALLOW}))
    loaded = load(inv)  # with those settings

    def quiet(_: str) -> None:
        pass

    rows: list[tuple[str, str, str]] = []
    ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
            t0 = time.monotonic()
            made = sample.make(Path(tmp) / "site")
            print(f"generated {made.files} files, {made.bytes / 1e6:.0f} MB in "
                  f"{time.monotonic() - t0:.1f} s")
            options = site.build_options(inv, loaded)
            site.build(made.source, Path(tmp) / "warm", options=options, log=quiet)  # image
            built = site.build(made.source, Path(tmp) / "out", options=options, log=quiet)
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in built.phases.items())
            rows.append(("build + link check", f"{built.seconds:.1f} s ({phases})",
                         "target <= 60 s"))
            ok &= built.seconds <= 60

            t0 = time.monotonic()
            _, res = site.deploy_site(loaded, made.source, prebuilt=built, log=quiet)
            first_s = time.monotonic() - t0
            rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            base_s, base_b = baseline(host, built.out)  # after ours: the memory figure
            sent = res[0].sent
            assert sent is not None and res[0].action == "deployed", res
            rows.append(("first deploy", f"{sent.bytes / 1e6:.1f} MB, {first_s:.1f} s",
                         f"tarball {base_b / 1e6:.1f} MB, {base_s:.1f} s "
                         f"(= {base_s / first_s:.1f}x our time)"))

            sample.change_one_page(made, f"bench-{time.time_ns()}")
            t0 = time.monotonic()
            built2 = site.build(made.source, Path(tmp) / "out", options=options, log=quiet)
            build2_s = time.monotonic() - t0
            base_s, base_b = baseline(host, built2.out)
            t0 = time.monotonic()
            _, res = site.deploy_site(loaded, made.source, prebuilt=built2, log=quiet)
            one_s = time.monotonic() - t0
            sent = res[0].sent
            assert sent is not None and res[0].action == "deployed", res
            share = sent.bytes / made.bytes
            rows.append(("one-page deploy", f"{sent.bytes / 1e3:.0f} kB ({100 * share:.3f}% "
                         f"of the site, {sent.files} files), {one_s:.1f} s (+ build "
                         f"{build2_s:.1f} s)",
                         f"tarball {base_b / 1e6:.1f} MB, {base_s:.1f} s "
                         f"(= {base_b / max(sent.bytes, 1):.0f}x our bytes, "
                         f"{base_s / one_s:.1f}x our time)"))
            ok &= share <= TARGET_ONE_PAGE_SHARE and one_s <= TARGET_ONE_PAGE_S

            t0 = time.monotonic()
            _, res = site.deploy_site(loaded, made.source, prebuilt=built2, log=quiet)
            same_s = time.monotonic() - t0
            rows.append(("no-change deploy", f"{res[0].action}, sent "
                         f"{'nothing' if res[0].sent is None else res[0].sent.bytes}, "
                         f"{same_s:.1f} s", "the same before: the content hash, no upload"))
            ok &= res[0].action == "up to date" and res[0].sent is None
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            rows.append(("memory", f"peak RSS {rss_ours:.0f} MB (generate, build, deploy)",
                         f"peak RSS {rss:.0f} MB once the tarball ran (it held "
                         f"{base_b / 1e6:.0f} MB)"))
    finally:
        web_yml.unlink()
        site.deploy_site(load(inv), EXAMPLE, force=True, log=quiet)  # as provision left it
    used = subprocess.run(ssh.argv(host.reach, f"du -sh {shlex.quote('/srv/course-website')}"
                                          " | cut -f1"), capture_output=True, text=True)
    print(f"{'figure':<20} {'ops site deploy (rsync, --link-dest)':<62} "
          "baseline: the whole-site tarball of before, same build, same run")
    for name, ours, base in rows:
        print(f"{name:<20} {ours:<62} {base}")
    print(f"disk of {host.name}:/srv/course-website now: {used.stdout.strip()}")
    print(f"targets: one-page deploy <= {100 * TARGET_ONE_PAGE_SHARE:.0f}% of the bytes and "
          f"<= {TARGET_ONE_PAGE_S:.0f} s; no change: up to date, nothing sent")
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

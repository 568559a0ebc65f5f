"""Benchmark: build and deploy of the example course site on a provisioned lab.

Times, in one run against the lab's web host (ctl):
- the build alone (Jekyll in the builder image, then the link check; the image exists);
- `ops site deploy` of a changed site (build + one gzipped tar over SSH + the `current`
  switch + pruning), the figure the target is about: <= 30 s;
- `ops site deploy` when nothing changed (build, hash equals the live release's: no upload);
- the baseline: the same built site uploaded with Ansible's copy module (`ansible web -m
  ansible.builtin.copy`), the upload a playbook-driven deploy would do, without the switch.
At the end the example site is deployed again, as `ops provision` left it.

    python bench/site.py [-i inventory/lab]   (a lab after `ops provision`)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ops import site  # noqa: E402
from ops.inventory import load  # noqa: E402

EXAMPLE = REPO / "examples" / "course-site"
TARGET_S = 30.0
BASELINE_DEST = "/tmp/course-ops-bench-copy"


def changed_copy(tmp: Path) -> Path:
    src = tmp / "site"
    shutil.copytree(EXAMPLE, src)
    (src / "bench.md").write_text(f"---\ntitle: Bench\npermalink: /bench/\n---\n"
                                  f"bench run {time.time_ns()}\n")
    return src


def baseline_copy(inv: Path, built: Path) -> float:
    """Ansible's copy module, the same files to a scratch directory of the web host."""
    hosts = str(inv / "hosts.yml")
    ansible = shutil.which("ansible", path=str(Path(sys.executable).parent)) or "ansible"
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    t0 = time.monotonic()
    subprocess.run([ansible, "web", "-i", hosts, "-m", "ansible.builtin.copy", "-a",
                    f"src={built}/ dest={BASELINE_DEST}/ mode=preserve"],
                   check=True, capture_output=True, env=env, cwd=REPO)
    took = time.monotonic() - t0
    subprocess.run([ansible, "web", "-i", hosts, "-m", "ansible.builtin.file", "-a",
                    f"path={BASELINE_DEST} state=absent"],
                   check=True, capture_output=True, env=env, cwd=REPO)
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--inventory", type=Path, default=REPO / "inventory" / "lab")
    args = ap.parse_args()
    inv = args.inventory.resolve()
    web = load(inv).hosts_in("web")
    print(f"web hosts: {', '.join(h.name for h in web)}; site: {EXAMPLE}")

    def quiet(_: str) -> None:
        pass

    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        src = changed_copy(Path(tmp))
        t0 = time.monotonic()
        built = site.build(src, Path(tmp) / "out", log=quiet)
        build_s = time.monotonic() - t0
        pages = sum(1 for _ in built.out.rglob("*.html"))

        t0 = time.monotonic()
        _, results = site.deploy_site(inv, src, log=quiet)
        deploy_s = time.monotonic() - t0
        assert all(r.action == "deployed" for r in results), results
        upload_s = max(r.seconds for r in results)

        t0 = time.monotonic()
        _, results = site.deploy_site(inv, src, log=quiet)
        same_s = time.monotonic() - t0
        assert all(r.action == "up to date" for r in results), results

        base_s = baseline_copy(inv, built.out)
        site.deploy_site(inv, EXAMPLE, force=True, log=quiet)  # as provision left it

    print(f"build alone ({pages} pages, link check included): {build_s:6.1f} s")
    print(f"build + deploy (changed site):            {deploy_s:6.1f} s "
          f"(upload + switch + prune {upload_s:.1f} s)  target <= {TARGET_S:.0f} s")
    print(f"no-change redeploy (build, no upload):    {same_s:6.1f} s")
    print(f"baseline upload, ansible copy module:     {base_s:6.1f} s "
          f"= {base_s / upload_s:.1f}x our upload + switch")
    ok = deploy_s <= TARGET_S
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: building the course image, against a cold build in the same run.

Figures, for one variant (default cpu), the wheelhouse filled beforehand (downloads are
not timed; the base image is made first if missing and timed on its own):
  cold build          every layer built (Docker's cache off): the baseline
  no-change rebuild   `ops images build` again, the whole CLI: target <= 5 s
  one pin changed     tqdm moved to another release in a copy of images/course, built
                      with the cache: target <= 40% of the cold build
  size                of the image and of each layer; the other variant's when built here

    python bench/images.py [--variant cpu] [--wheelhouse DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ops import lab  # noqa: E402
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


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="cpu")
    ap.add_argument("--wheelhouse", type=Path,
                    default=Path(os.environ.get("OPS_WHEELHOUSE",
                                                Path.home() / ".cache/course-ops/wheelhouse")))
    ap.add_argument("-i", "--inventory", type=Path, default=REPO / "inventory" / "lab")
    args = ap.parse_args()
    cuda = load_vars_only(args.inventory).get("course_image_cuda")
    client = lab._client()
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
        text = lock_file.read_text()
        old = p.lock.packages[PACKAGE]
        new_version, new_hash = other_release(args.wheelhouse, old.version)
        block = re.compile(rf"^{PACKAGE}=={re.escape(old.version)} \\\n(    --hash=\S+ ?\\?\n)+",
                           re.M)
        text, n = block.subn(f"{PACKAGE}=={new_version} \\\n    --hash={new_hash}\n", text)
        assert n == 1, "the pin was not found in the lock"
        lock_file.write_text(text)
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

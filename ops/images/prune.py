"""`ops images prune`: old course image tags off the GPU servers, never one a job uses.

Read once, plan in Python, apply in batches (the accounts sync's shape):

- read: the pushed tags (``state/images.json``: the tags pushed last and the history of
  every tag pushed and not pruned), the tags the controller's running and pending jobs
  use (their comments: ``course-image=TAG``, recorded by course-sbatch, course-shell and
  course-jupyter), and what each GPU server holds (its students' shared store and its
  Docker engine), one ssh per host;
- plan (:func:`plan`, pure): keep the newest ``keep`` tags of each variant, the tags
  pushed last (the default), and every tag a job uses; remove every other tag of the
  course repository, from the store and from Docker;
- apply: one ssh per host, under the store's lock, then the history in the state file.

The registry keeps every pushed tag (deletion is off): `ops images pull` brings a pruned
tag back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ops import inventory as inv_mod
from ops import ssh
from ops.errors import OpsError
from ops.images import registry as reg

DEFAULT_STORE = "/var/lib/course-containers/store"
LOCK = "/var/lib/course-containers/.lock"
SSH_TIMEOUT = 600
_COMMENT = re.compile(r"(?:^|[\s,;])course-image=([A-Za-z0-9_][A-Za-z0-9_.-]*)")
#: Job states whose image must stay.
ACTIVE_STATES = "PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING,REQUEUED,RESIZING"


@dataclass(frozen=True)
class Held:
    """What one GPU server holds of the course repository: tag lists."""

    host: str
    store: tuple[str, ...]
    docker: tuple[str, ...]


@dataclass
class Plan:
    #: tag -> why it stays
    keep: dict[str, str] = field(default_factory=dict)
    #: host -> (store tags, docker tags) to remove
    remove: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    #: the history without the pruned tags
    history: list[dict[str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(s or d for s, d in self.remove.values())


def tags_in_use(comments: Iterable[str]) -> set[str]:
    """The tags named by jobs' comments (``course-image=TAG``)."""
    return {m.group(1) for c in comments for m in _COMMENT.finditer(c)}


def plan(history: list[dict[str, str]], current: Mapping[str, str], in_use: set[str],
         held: list[Held], keep: int) -> Plan:
    """What to remove where. ``current``: variant -> the tag pushed last."""
    if keep < 1:
        raise OpsError("--keep must be at least 1")
    p = Plan()
    by_variant: dict[str, list[dict[str, str]]] = {}
    for h in history:
        by_variant.setdefault(h["variant"], []).append(h)
    for variant, entries in by_variant.items():
        newest = sorted(entries, key=lambda h: h.get("pushed_at", ""), reverse=True)
        for h in newest[:keep]:
            p.keep.setdefault(h["tag"], f"one of the {keep} newest {variant}")
    for variant, tag in current.items():
        p.keep[tag] = f"pushed last ({variant})"
    for tag in sorted(in_use):
        p.keep[tag] = "a running or pending job uses it"
    p.history = [h for h in history if h["tag"] in p.keep]
    for server in held:
        p.remove[server.host] = (sorted(t for t in server.store if t not in p.keep),
                                 sorted(t for t in server.docker if t not in p.keep))
    return p


# --------------------------------------------------------------------------- remote


def _run(host: inv_mod.Host, script: str, *args: str, what: str) -> str:
    return ssh.run(host.reach, script, *args, timeout=SSH_TIMEOUT, what=what)


_LIST = """
repo=$1 store=$2
if [ -d "$store" ] && command -v podman >/dev/null; then
  podman --root "$store" images --noheading --format '{{.Repository}}:{{.Tag}}'
fi
echo ---
if command -v docker >/dev/null; then
  docker image ls --format '{{.Repository}}:{{.Tag}}' "$repo"
fi
"""

_REMOVE = """
store=$1 repo=$2 ntags=$3; shift 3
mkdir -p "$(dirname "$LOCK")"
exec 9>"$LOCK"
flock -w 600 9 || { echo "another pull or prune holds $LOCK" >&2; exit 75; }
i=0
for tag in "$@"; do
  i=$((i + 1))
  if [ "$i" -gt "$ntags" ]; then docker image rm "$repo:$tag" >/dev/null; continue; fi
  # pulled by digest, an image keeps that name too: untag, then remove it once no tag is left
  id=$(podman --root "$store" image inspect --format '{{.Id}}' "$repo:$tag")
  podman --root "$store" untag "$id" "$repo:$tag"
  if [ -z "$(podman --root "$store" image inspect --format '{{join .RepoTags ""}}' "$id")" ]
  then podman --root "$store" rmi "$id" >/dev/null; fi
done
# podman rewrites its metadata root-only: every student's podman must read it again
find "$store" -path "$store/overlay/*/diff" -prune \\
  -o \\( ! -perm -o+r -o -type d ! -perm -o+x \\) -exec chmod a+rX {} +
""".replace("$LOCK", LOCK)


def _tags(listing: str, prefix: str) -> tuple[str, ...]:
    """The tags of ``prefix`` in ``REPO:TAG`` lines (untagged images, ``<none>``, left out:
    the store's are removed with their last tag)."""
    return tuple(sorted({line[len(prefix):] for line in listing.split()
                         if line.startswith(prefix) and line != prefix + "<none>"}))


def observe(inv: inv_mod.Inventory, repository_ref: str) -> tuple[list[Held], set[str]]:
    """Each GPU server's tags, and the tags the controller's active jobs use."""
    store = str(inv.vars.get("student_containers_store", DEFAULT_STORE))
    held = []
    prefix = repository_ref + ":"
    for host in inv.hosts_in("gpu_servers"):
        out = _run(host, _LIST, repository_ref, store, what="listing the course images")
        store_part, _, docker_part = out.partition("---\n")
        held.append(Held(host.name, _tags(store_part, prefix), _tags(docker_part, prefix)))
    controllers = inv.hosts_in("slurm_controller")
    comments: list[str] = []
    if controllers:
        comments = _run(controllers[0], "squeue -h -a -t \"$1\" -o '%k'", ACTIVE_STATES,
                        what="reading the jobs' comments").splitlines()
    return held, tags_in_use(comments)


def apply(inv: inv_mod.Inventory, repository_ref: str, p: Plan) -> None:
    """Remove what the plan says, one ssh per host; then record the history."""
    store = str(inv.vars.get("student_containers_store", DEFAULT_STORE))
    for host in inv.hosts_in("gpu_servers"):
        store_tags, docker_tags = p.remove.get(host.name, ([], []))
        if not store_tags and not docker_tags:
            continue
        _run(host, _REMOVE, store, repository_ref, str(len(store_tags)), *store_tags,
             *docker_tags, what="removing old course images")
    reg.save_state(inv.dir, reg.load_state(inv.dir), p.history)


def describe(p: Plan) -> list[tuple[str, str, str, str]]:
    """(host, where, tag, what) rows for the plan's table."""
    rows = []
    for host, (store_tags, docker_tags) in sorted(p.remove.items()):
        rows += [(host, "store", t, "remove") for t in store_tags]
        rows += [(host, "docker", t, "remove") for t in docker_tags]
    rows += [("*", "*", tag, f"keep: {why}") for tag, why in sorted(p.keep.items())]
    return rows

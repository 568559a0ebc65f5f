"""What several lab modules use: the students' image store on the GPU servers, and
waiting for a condition."""

from __future__ import annotations

import time

STORE = "/var/lib/course-containers/store"
JOBS = "/var/lib/course-containers/jobs"
UNREADABLE = (f"find {STORE} -path '{STORE}/overlay/*/diff' -prune -o \\( ! -perm -o+r -o "
              "-type d ! -perm -o+x \\) -print")
READABLE = UNREADABLE.replace("-print", "-exec chmod a+rX {} +")


def wait_for(what: str, predicate, timeout: float = 180, every: float = 1):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")

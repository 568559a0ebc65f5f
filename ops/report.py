"""Per-host summaries of a testinfra run, read from its JUnit XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

#: The target in a test id: ``test_x[ansible://gpu1]``, ``test_y[NOTSET-ansible://ctl]``.
_HOST = re.compile(r"[\[-](?:ansible|ssh|paramiko|local|docker)://([^\]]*)\]")


@dataclass
class HostResult:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


#: Where the checks that run on the control machine itself (the registry's TLS and
#: password, seen from here) are listed.
CONTROL = "control"


def host_of(case: ET.Element) -> str:
    """The host a test ran on: the ``host`` property tests/infra/conftest.py records;
    a check with no host ran on the control machine."""
    for prop in case.iter("property"):
        if prop.get("name") == "host":
            return prop.get("value") or CONTROL
    m = _HOST.search(case.get("name", ""))
    return (m.group(1) or "local") if m else CONTROL


def merge(files: list[Path]) -> ET.ElementTree[ET.Element]:
    """Several pytest JUnit files as one <testsuites> document."""
    root = ET.Element("testsuites")
    for f in files:
        doc = ET.parse(f).getroot()
        root.extend(doc.iter("testsuite") if doc.tag == "testsuites" else [doc])
    return ET.ElementTree(root)


def summarise_tree(tree: ET.ElementTree[ET.Element]) -> dict[str, HostResult]:
    out: dict[str, HostResult] = defaultdict(HostResult)
    root = tree.getroot()
    for case in root.iter("testcase"):
        name = case.get("name", "")
        r = out[host_of(case)]
        if case.find("failure") is not None or case.find("error") is not None:
            r.failed += 1
            r.failures.append(f"{case.get('classname', '')}::{name}")
        elif case.find("skipped") is not None:
            r.skipped += 1
        else:
            r.passed += 1
    return dict(sorted(out.items()))

"""course-ops: a GPU deep-learning course's infrastructure from one repository."""

from collections.abc import Callable
from pathlib import Path

__version__ = "0.1.0"

#: The repository the package runs from (playbooks, roles, specs live beside it).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: what every step that reports progress is given: one line at a time
Log = Callable[[str], None]

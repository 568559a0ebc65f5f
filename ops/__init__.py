"""course-ops: a GPU deep-learning course's infrastructure from one repository."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository the package runs from (playbooks, roles, specs live beside it).
REPO_ROOT = Path(__file__).resolve().parent.parent

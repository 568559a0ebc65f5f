"""What the site's unit tests share: a built site's pages written under a tmp dir."""

from __future__ import annotations

from pathlib import Path


def built_pages(tmp_path: Path, pages: dict[str, str]) -> Path:
    """``tmp_path/out`` holding ``pages`` (path -> text), as a build would leave them."""
    out = tmp_path / "out"
    for rel, body in pages.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(body)
    return out

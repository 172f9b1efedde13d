"""The documentation site: docs/ builds with MkDocs --strict (no broken link, no page left out of
the navigation), offline, and the README's links land on its pages."""

import os
import re
import subprocess
from pathlib import Path

import yaml

from helpers import BIN, ROOT


def nav_pages(nav) -> list[str]:
    """Every page file the navigation lists, in order."""
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_site_builds_strict_and_offline(tmp_path):
    r = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = nav_pages(config["nav"])
    # every page of docs/ is in the navigation (the results folders' tables are linked files, not pages)
    assert sorted(pages) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    for page in pages:
        html = tmp_path / "site" / f"{page[:-3]}.html"  # the offline plugin: no directory URLs
        assert html.is_file(), page
    # offline: no web font, style or script from another host, but the polyfill that lets the
    # search box work from file:// (Material's offline plugin; without it only search is lost)
    index = (tmp_path / "site" / "index.html").read_text()
    remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', index)
    assert "fonts.googleapis.com" not in index and remote == ["https://unpkg.com/iframe-worker/shim"], remote
    # the figures the pages show are in the site
    for page in pages:
        for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "docs" / page).read_text()):
            assert (tmp_path / "site" / image).is_file(), (page, image)


def test_readme_links_land_on_pages_of_the_site():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links and all((ROOT / link).is_file() for link in links), links
    nav = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert {Path(link).name for link in links} <= set(nav)


def test_readme_is_short():
    """The README is the front page (what, the two commands, one table, where the rest is); the
    manual lives in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250

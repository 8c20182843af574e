"""The README is a front page and the manual lives in docs/ (MkDocs; CI runs
`mkdocs build --strict`): the two commands come first, every link resolves, each dashboard page
and the report's summary block have their screenshot."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import yaml

from tests.support.service import REPO

README = REPO / "README.md"


def test_readme_starts_with_the_two_commands_and_stays_a_front_page() -> None:
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None and text.index("```bash") < text.index("\n## ")
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["./scripts/serve.sh", "./scripts/test.sh"]
    assert len(text.splitlines()) < 120  # the manual is in docs/
    assert "docs/img/dashboard-operations.png" in text


def test_every_relative_link_of_the_readme_and_the_docs_resolves() -> None:
    pages = [README, *sorted((REPO / "docs").rglob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} -> {target}"


def test_the_readme_s_web_addresses_are_where_the_service_serves() -> None:
    """The README's only web address is the dashboard: it is where the first command's
    service serves it with the default settings (the start log names the same address)."""
    from tacoreservice.config import ApiSettings

    text = README.read_text()
    urls = re.findall(r"<(https?://[^>]+)>", text) + re.findall(r"\]\((https?://[^)]+)\)", text)
    assert urls, "the README names the dashboard's address"
    api = ApiSettings()
    for url in urls:
        parsed = urlsplit(url)
        assert (parsed.hostname, parsed.port, parsed.path) == (api.host, api.port, "/"), url


def test_nav_lists_every_page_and_the_screenshots_are_there() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["strict"] is True

    def walk(items: list) -> list[str]:
        out: list[str] = []
        for item in items:
            for value in item.values():
                out += walk(value) if isinstance(value, list) else [value]
        return out

    listed = set(walk(config["nav"]))
    on_disk = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert listed == on_disk
    dashboard = (REPO / "docs" / "dashboard.md").read_text()
    for page in (
        "operations",
        "disconnected",
        "jobs",
        "requests",
        "portfolio",
        "decisions",
        "analysis",
    ):
        assert f"img/dashboard-{page}.png" in dashboard
    assert "img/report-summary.png" in (REPO / "docs" / "reports.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "mkdocs build --strict" in ci

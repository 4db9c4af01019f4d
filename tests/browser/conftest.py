"""Real-browser fixtures: headless Chromium driven by Selenium, one profile per page.

Every test here skips with a one-line reason when Chromium, its WebDriver or Selenium is
missing (``.ci/install-browser`` installs the first two on Debian/Ubuntu).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.browser.page import TodoPage, find_chromium


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(browser binary, chromedriver) or a skip saying what is missing."""
    found = find_chromium()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture
def open_page(chromium: tuple[str, str], tmp_path: Path) -> Iterator[Callable[..., TodoPage]]:
    """``open_page(name, url[, ready])``: a headless Chromium with its own profile (its
    own IndexedDB and localStorage) on ``url``, once the script ``ready`` returns true
    (default: the todo page's script ran). Every browser is quit at teardown."""
    pages: list[TodoPage] = []

    def make(name: str, url: str, ready: str | None = None) -> TodoPage:
        page = TodoPage(name, chromium, tmp_path / f"profile-{name}")
        pages.append(page)
        page.open(url, ready)
        return page

    yield make
    for page in pages:
        page.quit()

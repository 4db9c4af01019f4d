"""The todo page of ``examples/web`` in a headless Chromium, seen as a user sees it.

``TodoPage`` types into the page's forms and reads its list and status line from the
DOM; every wait polls the page with Selenium's ``WebDriverWait`` under a generous
timeout (the machine running the tests may be loaded), and a failed wait says what the
page showed and what its console logged.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

WAIT = 120.0  # generous: two browsers, a server and npm may share two busy cores

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> tuple[str, str] | str:
    """(browser, chromedriver) paths, or a one-line reason why the browser tests skip."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium, in the test extra)"
    browser = next((path for path in map(shutil.which, _BROWSERS) if path), None)
    if browser is None:
        return "no Chromium on PATH (.ci/install-browser installs chromium and chromium-driver)"
    driver = shutil.which("chromedriver")
    if driver is None:
        return "no chromedriver on PATH (.ci/install-browser installs chromium-driver)"
    return browser, driver


def make_driver(chromium: tuple[str, str], profile: Path) -> Any:
    """A headless Chromium (Selenium WebDriver) with its own profile folder ``profile``
    (its own IndexedDB and localStorage), logging the page's console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking",
                # timers of a background tab must run: the sync's reconnect backoff is one
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows", "--window-size=1000,800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(chromium[1]))


class TodoPage:
    """One browser (its own profile: own IndexedDB and localStorage) on the todo page."""

    def __init__(self, name: str, chromium: tuple[str, str], profile: Path) -> None:
        self.name = name
        self.driver = make_driver(chromium, profile)
        self.driver.set_script_timeout(WAIT)
        self._console: list[str] = []

    # -- reading the page -----------------------------------------------------------------
    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def titles(self) -> list[str]:
        return self.js("return Array.from(document.querySelectorAll('#todos li .title'))"
                       ".map(function (e) { return e.textContent; });")

    def status(self) -> str:
        return self.js("var s = document.getElementById('status'); return s ? s.dataset.state : '';")

    def message(self) -> str:
        return self.js("var m = document.getElementById('message'); return m ? m.textContent : '';")

    def refused(self) -> str:
        return self.js("var r = document.getElementById('refused');"
                       "return r && !r.hidden ? r.textContent : '';")

    def login_shown(self) -> bool:
        return self.js("return !document.getElementById('login').hidden;")

    def console(self) -> list[str]:
        try:
            self._console += [f"{e.get('level')} {e.get('message')}" for e in self.driver.get_log("browser")]
        except Exception as exc:  # a dead browser has no log to give; say so in the report
            self._console.append(f"(console unavailable: {exc})")
        return self._console

    def describe(self) -> str:
        try:
            shown = f"status={self.status()!r} todos={self.titles()!r} message={self.message()!r}"
        except Exception as exc:  # the page itself may be what broke
            shown = f"(page unreadable: {exc})"
        console = "\n    ".join(self.console()[-20:]) or "(empty)"
        return f"{self.name}: {shown}\n  console:\n    {console}"

    # -- waiting ----------------------------------------------------------------------------
    def wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """Poll ``condition`` until it is truthy; fail with what the page shows."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{self.describe()}") from None

    def wait_titles(self, expected: set[str], timeout: float = WAIT) -> None:
        self.wait(lambda: set(self.titles()) == expected and len(self.titles()) == len(expected),
                  f"{self.name} shows exactly {sorted(expected)}", timeout)

    def wait_status(self, state: str, timeout: float = WAIT) -> None:
        self.wait(lambda: self.status() == state, f"{self.name} status {state!r}", timeout)

    # -- acting as a user -----------------------------------------------------------------
    def open(self, url: str, ready: str | None = None) -> None:
        """Load ``url`` and wait until the script ``ready`` returns true (default: the
        todo page's script ran)."""
        self.driver.get(url)
        ready = ready or "return !!(window.todos && window.todos.db);"
        self.wait(lambda: self.js(ready), f"{self.name}: the page's script ran")

    def add(self, title: str) -> None:
        from selenium.webdriver.common.by import By

        box = self.driver.find_element(By.ID, "title")
        box.clear()
        box.send_keys(title)
        self.driver.find_element(By.CSS_SELECTOR, "#add button").click()
        self.wait(lambda: title in self.titles(), f"{self.name} lists {title!r} after adding it")

    def login(self, token: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "#login button").click()

    def quit(self) -> None:
        try:
            self.driver.quit()
        except Exception as exc:  # already gone: nothing left to stop
            print(f"{self.name}: quit failed: {exc}")

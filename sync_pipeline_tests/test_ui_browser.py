"""The Dagster UI in a real browser: a sync launched from the CLI is there, with its metadata.

Headless Chromium (Debian's package, installed by .ci/run) driven by Playwright. Without
Chromium the test is skipped, unless SYNC_PIPELINE_REQUIRE_BROWSER=1 (CI) makes that a failure.
Screenshots go to the test's temporary folder. The README's copies in docs/ are refreshed by
running this test with SYNC_PIPELINE_REFRESH_SCREENSHOTS=docs (a folder, relative to the
working directory): the screenshots are then copied there too.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from sync_pipeline_tests.support.waiting import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REFRESH_ENV = "SYNC_PIPELINE_REFRESH_SCREENSHOTS"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not Path(CHROMIUM).exists():
    if os.environ.get("SYNC_PIPELINE_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sync_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def ui_server(tmp_path: Path, database_url: str):
    """A demo sync launched from the CLI, then `sync-pipeline ui` on the same instance."""
    env = {
        **os.environ,
        "SYNC_PIPELINE_HOME": str(tmp_path / "home"),
        "DATABASE_URL": database_url,
    }
    registered = cli("demo", "--allow-database-url", env=env)  # DATABASE_URL: asked for
    assert registered.returncode == 0, registered.stderr
    synced = cli("sync", "contoso-demo", env=env)
    assert synced.returncode == 0, synced.stderr
    port = free_port()
    log = open(tmp_path / "ui.log", "w")  # closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync_pipeline.cli", "ui", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        try:
            if requests.get(f"{base}/server_info", timeout=2).ok:
                return True
        except requests.RequestException:
            pass
        assert proc.poll() is None, (tmp_path / "ui.log").read_text()
        return False

    def awaited() -> str:
        return "the UI to start:\n" + (tmp_path / "ui.log").read_text()

    wait_until(serving, 180, awaited, interval=1)
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_ui_shows_asset_graph_partitions_and_the_cli_run(ui_server: str, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(90_000)
        expect.set_options(timeout=90_000)

        # The asset graph: the four stages in order, each group's assets in the tree.
        page.goto(f"{ui_server}/asset-groups")
        skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit newsletter box
        skip.click()
        for group in ("extract", "transform", "load", "report"):
            expect(page.get_by_text(group, exact=True).first).to_be_visible()
        page.wait_for_timeout(1500)  # let the graph settle for the screenshot
        page.screenshot(path=str(shots / "ui-asset-graph.png"))

        # Every asset in the catalog.
        page.goto(f"{ui_server}/assets")
        for name in ("graph_users", "snapshot_users", "sync_diff", "app_directory"):
            expect(page.get_by_text(name, exact=True).first).to_be_visible()

        # The run launched from the CLI, tagged with its tenant and trigger, succeeded.
        page.goto(f"{ui_server}/runs")
        expect(page.get_by_text("contoso-demo").first).to_be_visible()
        expect(page.get_by_text("manual").first).to_be_visible()
        expect(page.get_by_text("Success").first).to_be_visible()

        # The tenant partition and the load's metadata (counts, the diff table).
        page.goto(f"{ui_server}/assets/app_directory?view=partitions")
        expect(page.get_by_text("contoso-demo").first).to_be_visible()
        page.goto(f"{ui_server}/assets/app_directory?view=events")
        expect(page.get_by_text("user_create").first).to_be_visible()
        page.screenshot(path=str(shots / "ui-app-directory.png"), full_page=True)
        browser.close()
    assert (shots / "ui-asset-graph.png").stat().st_size > 10_000
    refresh = os.environ.get(REFRESH_ENV)
    if refresh:  # asked for: the README's screenshots, refreshed
        for shot in shots.glob("*.png"):
            shutil.copy(shot, Path(refresh) / shot.name)

"""The Dagster UI for real: ``dagster dev`` serving the demo connection, a materialization
launched and read back over GraphQL, and the asset graph page opened in Debian's Chromium.

Needs Debian's ``chromium`` package (``make browser``): skipped without it, failed under CI.
"""

import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from dagster_dev import REPO, DagsterDev
from playwright.sync_api import expect, sync_playwright
from project_helpers import demo_project

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "docs" / "asset-graph.png"
CONNECTION = "customers_demo"
STEPS = ("left", "right", "plan", "apply_left", "apply_right")

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status }
    ... on PythonError { message }
  }
}"""

MATERIALIZATION = """
query Mat($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on BoolMetadataEntry { boolValue }
        }
      }
    }
  }
}"""

CHECK = """
query Check($key: AssetKeyInput!) {
  assetNodes(assetKeys: [$key]) {
    assetChecksOrError {
      ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
    }
  }
}"""


def _chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = "the UI test needs Debian's chromium (make browser; apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _launch(dev: DagsterDev) -> str:
    """Materialize every asset of the demo connection (what 'Materialize all' does)."""
    location, repository = dev.repository()
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": repository,
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": [CONNECTION, step]} for step in STEPS],
            "assetCheckSelection": [{"assetKey": {"path": [CONNECTION, "apply_right"]},
                                     "name": "in_sync"}],
        },
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "test", "value": "ui_browser"}]},
    }
    result = dev.graphql(LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def _wait_for_run(dev: DagsterDev, run_id: str, timeout: float = 45) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        run = dev.graphql(RUN, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        status = run["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still {status} after {timeout}s:\n{dev.log_tail()}")


def _metadata(dev: DagsterDev, step: str, run_id: str) -> dict[str, object]:
    data = dev.graphql(MATERIALIZATION, {"key": {"path": [CONNECTION, step]}})["assetOrError"]
    assert data["__typename"] == "Asset", data
    (mat,) = data["assetMaterializations"]
    assert mat["runId"] == run_id
    return {e["label"]: e.get("intValue", e.get("boolValue")) for e in mat["metadataEntries"]}


def test_materialize_over_graphql_and_see_the_asset_graph(tmp_path):
    chromium = _chromium()

    demo_project(tmp_path)
    with DagsterDev.running(tmp_path) as dev:
        run_id = _launch(dev)
        assert _wait_for_run(dev, run_id) == "SUCCESS", dev.log_tail()

        # 4 CSV customers, 2 CRM customers, Grace on both sides (matched by e-mail)
        assert _metadata(dev, "left", run_id)["records_read"] == 4
        assert _metadata(dev, "right", run_id)["records_read"] == 2
        right = _metadata(dev, "apply_right", run_id)
        assert (right["inserted"], right["failed"]) == (3, 0)
        left = _metadata(dev, "apply_left", run_id)
        assert (left["inserted"], left["failed"]) == (1, 0)
        assert _metadata(dev, "plan", run_id)["conflicts"] == 1
        node = dev.graphql(CHECK, {"key": {"path": [CONNECTION, "apply_right"]}})["assetNodes"]
        checks = node[0]["assetChecksOrError"]["checks"]
        assert [(c["name"], c["executionForLatestMaterialization"]["status"]) for c in checks] \
            == [("in_sync", "SUCCEEDED")]

        dev.graphql("mutation { setNuxSeen }")  # no "join the community" dialog on top
        location, _ = dev.repository()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(chromium), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{dev.url}/locations/{quote(location)}/asset-groups/{CONNECTION}"
                          "/lineage", wait_until="domcontentloaded")
                # every node of the connection's graph, each showing its materialization
                for step in STEPS:
                    expect(page.get_by_text(step, exact=True)).to_have_count(1, timeout=20_000)
                expect(page.get_by_text("Materialized", exact=True)).to_have_count(
                    len(STEPS), timeout=20_000)
                expect(page.get_by_text("1 / 1 Passed")).to_be_visible()  # the in_sync check
                expect(page.get_by_text(CONNECTION, exact=True).first).to_be_visible()
                SCREENSHOT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOT))
            finally:
                browser.close()
    png = SCREENSHOT.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1280, 800)

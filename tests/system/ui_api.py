"""GraphQL operations against a running Dagster webserver (the API the UI itself uses)."""

from __future__ import annotations

import time
from typing import Protocol

VIDEO_ID = "real-help"


class GraphQLServer(Protocol):
    def graphql(self, query: str, variables: dict | None = None) -> dict: ...

    def log_tail(self) -> str: ...


ASSET_KEY = {"path": ["video_catalog"]}

REPOSITORY_QUERY = """
query {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } } }
    ... on PythonError { message }
  }
  assetNodeOrError(assetKey: {path: ["video_catalog"]}) {
    __typename
    ... on AssetNode { jobNames partitionKeys groupName }
  }
}
"""

LAUNCH_RUN_MUTATION = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message path reason } }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on ConflictingExecutionParamsError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on InvalidSubsetError { message }
  }
}
"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } }
    ... on PythonError { message }
  }
}
"""

RUN_FAILURE_QUERY = """
query Events($runId: ID!) {
  logsForRun(runId: $runId, limit: 500) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message level } } }
  }
}
"""

MATERIALIZATION_QUERY = """
query Materialization($partition: String!) {
  assetOrError(assetKey: {path: ["video_catalog"]}) {
    __typename
    ... on Asset {
      assetMaterializations(partitions: [$partition], limit: 1) {
        partition
        runId
        metadataEntries {
          __typename
          label
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on BoolMetadataEntry { boolValue }
          ... on TextMetadataEntry { text }
          ... on MarkdownMetadataEntry { mdStr }
          ... on PathMetadataEntry { path }
        }
      }
    }
  }
}
"""

CHECKS_QUERY = """
query Checks {
  assetNodeOrError(assetKey: {path: ["video_catalog"]}) {
    ... on AssetNode {
      assetChecksOrError {
        __typename
        ... on AssetChecks { checks { name executionForLatestMaterialization { runId status evaluation { success } } } }
      }
    }
  }
}
"""

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def launch_catalog_run(server: GraphQLServer, partition: str = VIDEO_ID) -> str:
    """Launch ``video_catalog`` for ``partition`` with the ``launchRun`` mutation; return the run id."""
    data = server.graphql(REPOSITORY_QUERY)
    repos = data["repositoriesOrError"]
    assert repos["__typename"] == "RepositoryConnection", repos
    assert len(repos["nodes"]) == 1, repos
    repository = repos["nodes"][0]
    node = data["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    assert node["groupName"] == "inputs"
    assert partition in node["partitionKeys"], node["partitionKeys"]
    job_name = next(name for name in node["jobNames"] if name.startswith("__ASSET_JOB"))

    params = {
        "selector": {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"],
            "jobName": job_name,
            "assetSelection": [ASSET_KEY],
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    result = server.graphql(LAUNCH_RUN_MUTATION, {"executionParams": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def wait_for_run(server: GraphQLServer, run_id: str, timeout: float = 150.0) -> dict:
    """Poll ``runOrError`` until the run is SUCCESS, FAILURE or CANCELED; return the run."""
    deadline = time.monotonic() + timeout
    run = {}
    while time.monotonic() < deadline:
        run = server.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        if run["status"] in TERMINAL:
            return run
        time.sleep(1.0)
    raise AssertionError(f"run {run_id} still {run.get('status')} after {timeout:.0f} s\n{server.log_tail()}")


def run_errors(server: GraphQLServer, run_id: str) -> str:
    """The ERROR/CRITICAL messages of a run's event log (for failure messages)."""
    events = server.graphql(RUN_FAILURE_QUERY, {"runId": run_id})["logsForRun"].get("events", [])
    return "\n".join(e.get("message", "") for e in events if e.get("level") in {"ERROR", "CRITICAL"})[-4000:]

"""The one Definitions object of the code location."""

import dagster as dg

from sync_pipeline.defs.extract import extract_assets
from sync_pipeline.defs.jobs import sync_job, test_sync_job
from sync_pipeline.defs.load import load_assets
from sync_pipeline.defs.resources import Database, Graph
from sync_pipeline.defs.transform import directory_snapshot

defs = dg.Definitions(
    assets=[*extract_assets, directory_snapshot, *load_assets],
    jobs=[sync_job, test_sync_job],
    resources={"database": Database(), "graph": Graph()},
)

"""Microsoft Graph access: msal tokens, paging, retries, errors. No Dagster imports."""

from sync_pipeline.graph.client import GraphClient, GraphStats
from sync_pipeline.graph.errors import CredentialError, GraphAuthError, GraphError

__all__ = ["CredentialError", "GraphAuthError", "GraphClient", "GraphError", "GraphStats"]

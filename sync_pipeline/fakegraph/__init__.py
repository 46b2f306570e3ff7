"""The bundled fake Microsoft Graph: tenant generator and a local HTTPS Graph + token server.

Ground floor: no Dagster imports.
"""

from sync_pipeline.fakegraph.generator import bundled_tenant, generate_tenant, load_tenant_file
from sync_pipeline.fakegraph.server import FakeGraph, serve_forever

__all__ = ["FakeGraph", "bundled_tenant", "generate_tenant", "load_tenant_file", "serve_forever"]

from sync_pipeline.cli import run

run()

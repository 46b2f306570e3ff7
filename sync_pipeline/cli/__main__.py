from sync_pipeline.cli import main

main(prog_name="sync-pipeline")

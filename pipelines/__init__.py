"""Pipeline assembly, configuration, the targets and the local engine. Importing it configures nothing: the CLI
sets up logging at its entry point, and the SDK is prepared where a session is built (pipelines/session.py)."""

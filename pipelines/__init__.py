"""Pipeline assembly, configuration and the local engine."""

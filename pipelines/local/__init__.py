"""The local target: executes the definition `get_pipeline` builds, on this machine, without Docker or AWS."""

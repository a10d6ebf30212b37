"""One builder per pipeline step; `pipelines.assembly.get_pipeline` wires them together."""

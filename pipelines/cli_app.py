"""The CLI's shared state: the App object each command gets, and how user mistakes are shown."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from pipelines.config import ConfigError, PipelineConfig, load_config

console = Console()
err_console = Console(stderr=True)


class UserError(click.ClickException):
    """A mistake the user can fix: printed as one line, exit code 2, no traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        err_console.print("[red]error:[/red] ", end="")
        # soft_wrap: one line even where output is not a terminal (rich would fold it at 80 columns).
        err_console.print(self.message, markup=False, highlight=False, soft_wrap=True)


class PipelineCLI(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from pipelines.targets import TargetError

        try:
            return super().invoke(ctx)
        except (ConfigError, TargetError, ValueError) as err:
            if isinstance(err, click.ClickException):
                raise
            raise UserError(str(err)) from None


@dataclass
class App:
    overrides: dict[str, Any]
    config_file: str | None
    verbose: bool
    _config: PipelineConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> PipelineConfig:
        if self._config is None:
            self._config = load_config(self.config_file, self.overrides)
        return self._config

    @property
    def is_local(self) -> bool:
        return self.config.project.target == "local"

    def apply_verbosity(self) -> None:
        """--verbose brings back the SDK's own log lines (pipelines/__init__.py quiets them by default)."""
        if self.verbose:
            for name in ("", "sagemaker", "sagemaker.config"):
                logging.getLogger(name).setLevel(logging.INFO)

    def workspace(self):
        from pipelines.local.workspace import Workspace

        return Workspace.open(Path(self.config.local.workspace))

    def target(self):
        if self.is_local:
            from pipelines.local.target import LocalTarget

            return LocalTarget(self.config, self.workspace())
        from pipelines.cloud import SageMakerTarget

        return SageMakerTarget(self.config)

    def build(self, uploads: str = "discard", bridge: Any = None):
        """The definition, checked. `uploads`: discard (offline), workspace (local target) or a recording bridge."""
        from pipelines.building import build_definition
        from pipelines.session import Uploads, build_pipeline_session

        if uploads == "workspace":
            session = build_pipeline_session(self.config, Uploads.WORKSPACE, workspace_s3=self.workspace().s3_root)
        else:
            session = build_pipeline_session(self.config, Uploads.DISCARD, bridge=bridge)
        return build_definition(self.config, session)

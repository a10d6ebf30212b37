"""The CLI's shared state: the App object each command gets, and how user mistakes are shown."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.targets import Target, TargetError, open_target

if TYPE_CHECKING:
    from pipelines.building import BuiltDefinition
    from pipelines.s3_bridge import S3Bridge

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

    def target(self) -> Target:
        return open_target(self.config)

    def build(self, code: S3Bridge | None = None) -> BuiltDefinition:
        """The definition, checked. The code the SDK uploads meanwhile goes to `code` (a target's recording
        bridge, for `upsert`), else nowhere (offline commands need only its URIs)."""
        from pipelines.building import build_definition
        from pipelines.session import Uploads, build_pipeline_session

        return build_definition(self.config, build_pipeline_session(self.config, Uploads.DISCARD, bridge=code), code)


def configure_logging(verbose: bool) -> None:
    """The CLI's logging, set at its entry before anything imports the SDK: warnings only, and the SDK's own lines
    (the v3 banner, "Not applying SDK defaults", PipelineSession notices) off unless --verbose brings them back.
    A root handler set here also makes the SDK's own basicConfig(INFO) a no-op."""
    from pipelines.session import quiet_sdk_logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_sdk_logging()
    if verbose:
        for name in ("", "sagemaker", "sagemaker.config"):
            logging.getLogger(name).setLevel(logging.INFO)

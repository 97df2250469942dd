"""The `vpa-fleet` entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recommender import __version__
from recommender.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"vpa-fleet {__version__}"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: vpa-fleet" in capsys.readouterr().err


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["frobnicate"])
    assert exited.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_installed_console_script_runs() -> None:
    script = [sys.executable, "-m", "recommender.cli", "--help"]
    result = subprocess.run(script, capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "run" in result.stdout

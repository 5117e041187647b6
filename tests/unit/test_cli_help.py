"""Every ``asyncgate`` command says what it does under ``--help``."""

import pytest

from services.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_description(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as finished:
        main([command, "--help"])
    shown = capsys.readouterr().out

    assert finished.value.code == 0
    usage, _, rest = shown.partition("\n\n")
    description = rest.split("options:")[0].strip()
    assert usage.startswith(f"usage: asyncgate {command}")
    # A sentence or more, not just the one-line summary of `asyncgate --help`.
    assert len(description.split()) >= 8, shown

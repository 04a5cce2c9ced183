"""Which files `lab up --rules FOLDER` takes: hidden ones below the folder are left out, but a
folder that itself lives under a hidden one (~/.cache/drillkit/public-rules) is read."""

from __future__ import annotations

from pathlib import Path

from drillkit.lab.userrules import collect


def test_a_folder_under_a_hidden_folder_is_read_and_hidden_files_below_it_are_not(tmp_path: Path) -> None:
    folder = tmp_path / ".cache" / "rules"
    (folder / ".git").mkdir(parents=True)
    (folder / "a.yml").write_text("groups: []\n")
    (folder / ".git" / "b.yaml").write_text("groups: []\n")
    (folder / "LICENSE").write_text("text\n")
    assert collect([str(folder)]) == [folder / "a.yml"]

"""A rule's code inputs (vaegaps.codedeps): the package modules its script imports, transitively."""

from pathlib import Path

from workflow_runner import REPO

from vaegaps.codedeps import script_code, script_modules


def test_code_inputs_follow_imports_transitively_and_nothing_else():
    script = REPO / "workflow" / "scripts" / "gather_parts.py"
    mods = script_modules(script)
    # scatter imports io and errors, stage imports runtime; the gather job imports no torch module
    assert {"__init__", "scatter", "stage", "io", "errors"} <= set(mods), mods
    assert not {"evaluate", "vae", "ais", "local_opt"} & set(mods), mods
    files = script_code(script)
    assert [Path(f).stem for f in files] == mods and all(Path(f).is_file() for f in files)

"""A rule's code inputs (vaegaps.pipeline.codedeps): the package modules its script imports, transitively."""

from pathlib import Path

from workflow_runner import REPO

from vaegaps.pipeline.codedeps import script_code, script_modules


def test_code_inputs_follow_imports_transitively_and_nothing_else():
    script = REPO / "workflow" / "scripts" / "gather_parts.py"
    mods = script_modules(script)
    # scatter imports io and errors (relative imports up from the subpackage), importing a
    # subpackage's module runs its __init__; the gather job imports no torch module
    assert {"__init__", "pipeline.__init__", "pipeline.scatter", "pipeline.stage", "io", "errors"} <= set(mods), mods
    assert not {"evaluate", "vae", "ais", "local_opt"} & set(mods), mods
    files = script_code(script)
    src = REPO / "src" / "vaegaps"
    assert [".".join(Path(f).relative_to(src).with_suffix("").parts) for f in files] == mods
    assert all(Path(f).is_file() for f in files)


def test_relative_and_absolute_imports_of_a_subpackage_resolve(tmp_path):
    """`from ..io import`, `from .stage import`, `from vaegaps.pipeline import scatter` and
    `import vaegaps.pipeline.stages` name the modules they run; a name that is not a module (a
    function imported from one) names nothing more."""
    from vaegaps.pipeline import codedeps

    assert codedeps._imported(codedeps.ast.parse("from ..io import write_csv\nfrom .stage import stage"),
                              "pipeline.stages") == {"io", "pipeline.stage", "pipeline.__init__"}
    script = tmp_path / "s.py"
    script.write_text("from vaegaps.pipeline import scatter\nimport vaegaps.pipeline.stages\n")
    mods = set(script_modules(script))
    assert {"pipeline.__init__", "pipeline.scatter", "pipeline.stages", "pipeline.stage"} <= mods
    assert "pipeline" not in mods and "scatter" not in mods


def test_the_library_never_imports_the_pipeline_layer():
    """The layers (README, module table): no top-level module imports vaegaps.pipeline, even inside
    a function, and no file outside the pipeline layer names Snakemake, not even in a comment (its
    package data included: the experiment registry's captions are Snakemake report templates);
    the pipeline imports the library."""
    from vaegaps.pipeline import codedeps

    library = sorted(p.stem for p in codedeps.SRC.glob("*.py"))
    assert {"io", "errors", "config", "evaluate"} <= set(library)
    for module in library:
        up = {m for m in codedeps._module_imports(module) if m.startswith("pipeline.")}
        assert not up, f"{module}.py imports the pipeline layer: {sorted(up)}"
    outside = [p for p in codedeps.SRC.rglob("*") if p.is_file() and "pipeline" not in p.relative_to(codedeps.SRC).parts
               and p.suffix in (".py", ".yaml")]
    assert len(outside) > len(library)  # the package data too
    named = [p.name for p in outside if "snakemake" in p.read_text().lower()]
    assert not named, f"outside vaegaps/pipeline/, these name Snakemake: {named}"
    assert "evaluate" in codedeps._module_imports("pipeline.sources")


def test_every_name_imported_from_the_package_exists():
    """Each `from vaegaps.X import name` (relative or not, inside functions too: a stage driver's
    imports run only in its job) names something module X has."""
    import importlib

    from vaegaps.pipeline import codedeps

    for path in sorted(codedeps.SRC.rglob("*.py")):
        module = ".".join(path.relative_to(codedeps.SRC).with_suffix("").parts)
        package = ["vaegaps", *module.split(".")[:-1]]
        for node in codedeps.ast.walk(codedeps.ast.parse(path.read_text())):
            if isinstance(node, codedeps.ast.ImportFrom) and (node.level or (node.module or "").startswith("vaegaps")):
                base = ".".join([*package[:len(package) - node.level + 1], node.module or ""] if node.level
                                else [node.module]).strip(".")
                target = importlib.import_module(base)
                for alias in node.names:
                    assert hasattr(target, alias.name) or importlib.util.find_spec(f"{base}.{alias.name}"), \
                        f"{path.name}: from {base} import {alias.name}"


def test_jobs_import_the_package_the_snakefile_imports(monkeypatch, tmp_path):
    """share_source puts the Snakefile's src/ first on the PYTHONPATH its jobs inherit, once."""
    import os

    from vaegaps.pipeline.stage import share_source

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    share_source(tmp_path / "src")
    share_source(tmp_path / "src")
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "src"), "/elsewhere"]
    monkeypatch.delenv("PYTHONPATH")
    share_source(tmp_path / "src")
    assert os.environ["PYTHONPATH"] == str(tmp_path / "src")

"""One namespace and one direction: the import rules, read from the source with `ast`.

- contract and artifacts import nothing of ours;
- jobs imports only contract, artifacts (the model files) and jobs, and never the training stack;
- export may import jobs, contract, artifacts and export;
- nothing in the package imports export except the command line's registration of the training
  commands;
- everything names our modules `classify_batch.*`, never a top-level `jobs`, `export` or
  `artifacts`.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = "classify_batch"
TRAINING_STACK = {"tensorflow", "keras", "tf2onnx", "onnx", "mnist", "matplotlib"}
ALLOWED = {
    "contract": set(),
    "artifacts": set(),
    "jobs": {"contract", "artifacts", "jobs"},
    "export": {"contract", "artifacts", "jobs", "export"},
}


def imports(path: Path) -> list[tuple[str, ast.AST, list[ast.AST]]]:
    """(module, node, enclosing function/class nodes) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, ast.AST, list[ast.AST]]] = []

    def visit(node: ast.AST, scope: list[ast.AST]) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, node, scope) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node, scope))
            if node.module == OURS:  # from classify_batch import artifacts
                found.extend((f"{OURS}.{alias.name}", node, scope) for alias in node.names)
        inner = scope + [node] if isinstance(node, ast.FunctionDef | ast.ClassDef) else scope
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, [])
    return found


def layer(module: str) -> str | None:
    """classify_batch.jobs.run -> jobs; classify_batch.contract -> contract; others -> None."""
    parts = module.split(".")
    if parts[0] != OURS or len(parts) < 2:
        return None
    return parts[1]


def package_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("*.py"))


@pytest.mark.parametrize("folder", ["jobs", "export", "artifacts"])
def test_each_layer_imports_only_what_it_may(folder: str) -> None:
    wrong = []
    for path in package_files(folder):
        for module, node, _ in imports(path):
            target = layer(module)
            if target is not None and target not in ALLOWED[folder]:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
            if folder == "jobs" and module.split(".")[0] in TRAINING_STACK:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_contract_imports_nothing_of_ours() -> None:
    ours = [m for m, _, _ in imports(ROOT / OURS / "contract.py") if m.split(".")[0] == OURS]
    assert ours == []


def test_only_the_cli_registration_imports_export() -> None:
    wrong = []
    for path in package_files("jobs") + package_files("artifacts") + package_files(OURS):
        for module, node, scope in imports(path):
            if layer(module) != "export":
                continue
            in_registration = path.name == "cli.py" and any(
                getattr(s, "name", "") == "_register_training" for s in scope
            )
            if not in_registration:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_checkout_folders_as_top_level_packages() -> None:
    folders = ["jobs", "export", "artifacts", OURS, "tests", "benchmarks"]
    wrong = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {module}"
        for folder in folders
        for path in package_files(folder)
        for module, node, _ in imports(path)
        if module.split(".")[0] in {"jobs", "export", "artifacts"}
    ]
    assert not wrong, "\n".join(wrong)


def test_the_package_links_to_the_design_card_folders() -> None:
    for name in ("jobs", "export", "artifacts"):
        link = ROOT / OURS / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), link


def test_the_rule_catches_a_bad_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from classify_batch.export.train import train\nimport tensorflow\n")
    modules = [layer(m) for m, _, _ in imports(bad)]
    assert "export" in modules and "export" not in ALLOWED["jobs"]

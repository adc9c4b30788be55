"""Imports point down: every import in core (deferred ones too) goes to a module of its
own layer or a lower one, as CONTRIBUTING's architecture block declares; core imports
no plugin, and no plugin imports core's top layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

CORE = REPO / "core" / "src" / "dgm"
PLUGINS = [REPO / "plugins" / name / "src" for name in ("image", "audio", "texture")]
ORDER = ("bottom", "middle", "upper", "top")


def declared_layers() -> dict[str, str]:
    """Module (``families`` for the folder) -> layer, read from CONTRIBUTING.md."""
    text = (REPO / "CONTRIBUTING.md").read_text()
    section = text[text.index("## The architecture in a page"):]
    block = section[section.index("```\n") + 4:]
    block = block[:block.index("```")]
    layers: dict[str, str] = {}
    layer = None
    for line in block.splitlines():
        word = line.split(" ", 1)[0]
        if word:
            layer = word
        if layer not in ORDER:
            continue
        layers_line = line[len(word):] if word else line
        layers.update({name: layer for name in _names(layers_line)})
    return layers


def _names(line: str) -> list[str]:
    flat = re.sub(r"\([^)]*\)?", "", line)  # parentheses may span lines: drop their text
    flat = re.sub(r"^[^(]*\)", "", flat)
    return [n.strip().rstrip("/") for n in flat.split(",")
            if re.fullmatch(r"[a-z_]+/?", n.strip())]


def _layer_of(module: str, layers: dict[str, str]) -> str | None:
    """``families.vae`` -> the layer of ``families``."""
    return layers.get(module) or layers.get(module.split(".")[0])


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _core_modules() -> dict[str, Path]:
    return {".".join(p.relative_to(CORE).with_suffix("").parts): p
            for p in CORE.rglob("*.py")
            if p.name != "__init__.py" or p.parent != CORE}


def test_every_core_module_has_one_declared_layer():
    layers = declared_layers()
    assert set(layers.values()) == set(ORDER)
    missing = [m for m in _core_modules()
               if m not in ("__main__",) and not m.endswith("__init__")
               and _layer_of(m, layers) is None]
    assert not missing, f"modules CONTRIBUTING's architecture block does not place: {missing}"
    stale = [m for m in layers if m not in {k.split(".")[0] for k in _core_modules()}]
    assert not stale, f"CONTRIBUTING's architecture block names modules that are gone: {stale}"


def test_core_imports_point_down_and_never_at_a_plugin():
    layers = declared_layers()
    upward = []
    for module, path in _core_modules().items():
        own = _layer_of(module, layers)
        for imported in _imports(path):
            assert not imported.startswith("dgm_"), f"core module {module} imports {imported}"
            if not imported.startswith("dgm.") or own is None:
                continue
            target = _layer_of(imported.removeprefix("dgm."), layers)
            if target is not None and ORDER.index(target) > ORDER.index(own):
                upward.append(f"{module} ({own}) imports {imported} ({target})")
    assert not upward, "imports pointing up: " + "; ".join(upward)


def test_no_plugin_imports_cores_top_layer():
    layers = declared_layers()
    top = {m for m, layer in layers.items() if layer == "top"}
    found = [f"{path.relative_to(REPO)} imports {imported}"
             for root in PLUGINS for path in root.rglob("*.py")
             for imported in _imports(path)
             if imported.startswith("dgm.") and imported.split(".")[1] in top]
    assert not found, "; ".join(found)

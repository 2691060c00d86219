"""Imports point down the stages of the study: no module imports a module of a later stage.

Every import of every module of ``umcam_lib`` is read from its source with ``ast``, imports
inside functions included (an import hidden in a function is still a dependency), and each
module is placed in one of the layers below. A module may import its own layer and the layers
before it, never one after it. A new module must be placed in a layer here (the test says so).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path


PACKAGE_DIR = Path(__file__).resolve().parents[1] / "umcam_lib"

#: The layers, first to last. A pattern ``pkg.*`` places every module inside ``pkg``; a plain
#: name places that one module (for a package, its ``__init__``). The most specific pattern wins:
#: a plain name over ``pkg.*``, a longer ``pkg.*`` over a shorter one.
LAYERS: list[tuple[str, list[str]]] = [
    # foundations: paths, atomic files, devices and seeds, the parameters (files, schema, notebook
    # loading), provenance
    ("base", ["umcam_lib", "umcam_lib.paths", "umcam_lib.io", "umcam_lib.hashing", "umcam_lib.runtime", "umcam_lib.config",
              "umcam_lib.config.*", "umcam_lib.provenance"]),
    # the prepared slices, and what notebooks store between them: per-slice maps, CAM thresholds, scores
    ("data", ["umcam_lib.data", "umcam_lib.data.*"]),
    # networks only
    ("models", ["umcam_lib.models", "umcam_lib.models.*"]),
    # the method's algorithms and measures: CAMs, GSE, the Eq. 8 loss, Dice/HD95, 3D scoring
    ("methods", ["umcam_lib.cam.*", "umcam_lib.gse", "umcam_lib.gse.*", "umcam_lib.losses", "umcam_lib.metrics",
                 "umcam_lib.scoring"]),
    # training loops, targets, prediction
    ("train", ["umcam_lib.train", "umcam_lib.train.*"]),
    # the DRS / AMR baselines end to end (they train classifiers and read CAMs)
    ("baselines", ["umcam_lib.baselines", "umcam_lib.baselines.*"]),
    # the reporting wing: tables of recorded scores, their figures and the findings drawn from them
    ("report", ["umcam_lib.report", "umcam_lib.report.*"]),
    # a notebook's step that computes and records (Tables 1-2 rows, thresholds.json), and the
    # package front that gathers names for the notebooks (``from umcam_lib import cam``)
    ("study", ["umcam_lib.cam", "umcam_lib.cam.study", "umcam_lib.gse.study", "umcam_lib.train.segmentation"]),
    # the two program wings: the notebook runner, and the brain extractor (segment, ship, segmenter)
    ("apps", ["umcam_lib.pipeline", "umcam_lib.pipeline.*", "umcam_lib.segment", "umcam_lib.segment.*"]),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def module_sources(root: Path = PACKAGE_DIR) -> dict[str, str]:
    """Module name -> source of every ``.py`` file of the package (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path.read_text()
    return out


def layer_of(module: str) -> str | None:
    """The layer of ``module`` (None when no pattern places it)."""
    best: tuple[int, str] | None = None
    for layer, patterns in LAYERS:
        for pattern in patterns:
            if pattern == module:
                return layer
            if pattern.endswith(".*") and module.startswith(pattern[:-1]):
                score = len(pattern)
                if best is None or score > best[0]:
                    best = (score, layer)
    return best[1] if best else None


def imports_of(module: str, source: str, modules: set[str]) -> list[tuple[str, int]]:
    """``(imported umcam_lib module, line)`` of every import in ``source``, at any depth.

    ``from pkg import name`` imports the module ``pkg.name`` when there is one, else the
    package ``pkg`` (its ``__init__``).
    """
    is_package = any(m.startswith(module + ".") for m in modules) or module == "umcam_lib"
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "umcam_lib"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "umcam_lib":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub if sub in modules else base, node.lineno))
    return out


def violations(sources: dict[str, str]) -> list[str]:
    """Every import of a later layer, and every module no layer places, as readable lines."""
    names = set(sources)
    out = []
    for module, source in sorted(sources.items()):
        own = layer_of(module)
        if own is None:
            out.append(f"{module}: in no layer; place it in LAYERS of tests/test_layers.py")
            continue
        for target, line in dict.fromkeys(imports_of(module, source, names)):
            theirs = layer_of(target)
            if theirs is not None and RANK[theirs] > RANK[own]:
                out.append(f"{module} (layer {own}) line {line} imports {target} (layer {theirs}, later)")
    return out


def test_every_import_points_down():
    problems = violations(module_sources())
    assert not problems, "imports that point up the layers:\n  " + "\n  ".join(problems)


def test_every_module_has_a_layer_and_every_pattern_a_module():
    sources = module_sources()
    assert [m for m in sources if layer_of(m) is None] == []
    unused = [p for _, patterns in LAYERS for p in patterns
              if not any(m == p or (p.endswith(".*") and m.startswith(p[:-1])) for m in sources)]
    assert unused == [], f"patterns that place no module (renamed or removed?): {unused}"


def test_the_check_fails_on_an_upward_import():
    """The check can fail: a network module that imports the training stage inside a function."""
    sources = module_sources()
    bad = dict(sources)
    bad["umcam_lib.models.fake"] = "def f():\n    from ..train.classifier import train_classifier\n    return 1\n"
    problems = violations(bad)
    assert problems == ["umcam_lib.models.fake (layer models) line 2 imports umcam_lib.train.classifier "
                        "(layer train, later)"]
    # the package front counts as its own layer: `from ..cam import X` from below it is refused
    bad = dict(sources)
    bad["umcam_lib.gse.fake"] = "import numpy\nfrom ..cam import compute_cams\n"
    assert violations(bad) == ["umcam_lib.gse.fake (layer methods) line 2 imports umcam_lib.cam (layer study, later)"]
    # a module in no layer is reported too
    bad = dict(sources)
    bad["umcam_lib.extra"] = "x = 1\n"
    assert violations(bad) == ["umcam_lib.extra: in no layer; place it in LAYERS of tests/test_layers.py"]


def rooms(root: Path = PACKAGE_DIR) -> list[str]:
    """The package's top-level entries (folders and flat modules) as dotted names."""
    return sorted(f"umcam_lib.{p.stem}" for p in root.iterdir()
                  if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and p.name != "__init__.py"))


def room_layers() -> dict[str, set[str]]:
    """Layer -> the rooms (top-level folders and modules) its patterns place, read from LAYERS."""
    out: dict[str, set[str]] = {}
    for layer, patterns in LAYERS:
        for p in patterns:
            parts = p.removesuffix(".*").split(".")
            if len(parts) >= 2:
                out.setdefault(layer, set()).add(parts[1])
    return out


def contributing_layers(text: str) -> dict[str, set[str]]:
    """Layer -> the top-level names in the 'folders and modules' column of CONTRIBUTING's table."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in RANK:
            names = re.findall(r"`([a-z_]+)(?:[./][a-z_.]*)?/?`", cells[1])
            out[cells[0]] = {n for n in names}
    return out


def test_contributing_and_the_package_map_name_the_layers_folders():
    """CONTRIBUTING's layer table and the package map in ``__init__`` describe the rooms LAYERS places."""
    root = PACKAGE_DIR.parent
    table = contributing_layers((root / "CONTRIBUTING.md").read_text())
    expected = room_layers()
    assert list(table) == [name for name, _ in LAYERS], "CONTRIBUTING's table lists the layers in order"
    for layer, names in expected.items():
        # inner names of a room (``report/`` (``tables``, ...)) are allowed beside the rooms
        assert names <= table[layer], f"{layer}: CONTRIBUTING lacks {sorted(names - table[layer])}"
    package_map = (PACKAGE_DIR / "__init__.py").read_text()
    unnamed = [r for r in rooms() if f":mod:`{r}`" not in package_map]
    assert unnamed == [], f"rooms missing from the package map in umcam_lib/__init__.py: {unnamed}"


def test_the_docs_check_fails_on_a_room_missing_from_the_table():
    table = contributing_layers("| report | `report/` (`tables`) | x |\n| apps | `pipeline/` | y |\n")
    assert table == {"report": {"report", "tables"}, "apps": {"pipeline"}}
    assert not {"segment"} <= table["apps"]


def test_relative_imports_resolve_to_modules_or_packages():
    mods = set(module_sources())
    got = imports_of("umcam_lib.cam.study", "from .. import report\nfrom . import gradcam\nfrom .fusion import umcam\n"
                     "from ..data import SliceSet\n", mods)
    assert got == [("umcam_lib.report", 1), ("umcam_lib.cam.gradcam", 2), ("umcam_lib.cam.fusion", 3),
                   ("umcam_lib.data", 4)]
    assert imports_of("umcam_lib.cam", "from .gradcam import compute_cams\n", mods) == [("umcam_lib.cam.gradcam", 1)]

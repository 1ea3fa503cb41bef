"""The layout's rules, read from the source: which layer may import which, and that the
audio process of `play` never imports torch.

Every `import` statement counts, at module level or inside a function: an import placed
in a function runs as surely as one at the top, only later. The graph is built from the
files (ast), so nothing here depends on what a test happened to import first.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "singsynth"

# Layers from the bottom up. A module may import its own layer and those below it,
# never one above (the names are module prefixes; the first that matches wins).
LAYERS = [
    ("vocabulary", ("singsynth.errors", "singsynth.notes", "singsynth.files",
                    "singsynth.yamlfile")),
    ("presets", ("singsynth.presets",)),
    ("generation", ("singsynth.generation",)),
    ("engine", ("singsynth.engine",)),
    ("model", ("singsynth.model",)),
    ("data", ("singsynth.data",)),
    ("train/eval", ("singsynth.train", "singsynth.eval")),
    ("hosts", ("singsynth.hosts", "singsynth.export")),
    ("cli", ("singsynth.cli", "singsynth.fuzzing", "singsynth.__main__", "singsynth")),
]
# Above the engine but not allowed to reach into it: the model knows nothing of how its
# notes are played, and the engine and generators nothing of torch.
FORBIDDEN = {
    "model": ("singsynth.engine", "singsynth.generation", "singsynth.hosts"),
    "data": ("singsynth.engine", "singsynth.generation", "singsynth.hosts"),
}
# The one edge from the torch-free side to the torch side: a lazy checkpoint source loads
# its model when a note must really be made, in the process that makes notes (play's
# generator child, or render's own process), never in play's audio process.
TORCH_CROSSING = {("singsynth.model.files", "singsynth.model.source")}
# What play's audio process runs: its command, and the host and adapters it drives.
AUDIO_PROCESS = ("singsynth.cli.play", "singsynth.hosts.live")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports():
    """{module: set of imported module names (singsynth's own and third-party tops)}."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        modules[name] = found
    # Keep only real modules, and count a package's __init__ for each module in it.
    for name, found in modules.items():
        real = {m for m in found if m in modules or not m.startswith("singsynth")}
        for m in list(real):
            while "." in m:
                m = m.rpartition(".")[0]
                if m in modules:
                    real.add(m)
        real.discard(name)
        modules[name] = real
    return modules


IMPORTS = read_imports()


def layer(name: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS")


def test_every_module_is_in_a_layer():
    for name in IMPORTS:
        layer(name)


@pytest.mark.parametrize("name", sorted(IMPORTS))
def test_imports_go_down_the_layers(name):
    mine = layer(name)
    upward = [m for m in IMPORTS[name] if m.startswith("singsynth.") and layer(m) > mine]
    assert not upward, f"{name} ({LAYERS[mine][0]}) imports a layer above it: {sorted(upward)}"
    banned = FORBIDDEN.get(LAYERS[mine][0], ())
    across = [m for m in IMPORTS[name] if m.startswith(banned)] if banned else []
    assert not across, f"{name} must not import {sorted(across)}"


def test_the_vocabulary_depends_on_nothing_of_singsynth_but_errors():
    for name in ("singsynth.notes", "singsynth.errors"):
        own = {m for m in IMPORTS[name] if m.startswith("singsynth")}
        assert own <= {"singsynth"}, f"{name} imports {sorted(own)}"


def reachable(roots, crossings=TORCH_CROSSING):
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(m for m in IMPORTS.get(name, ()) if (name, m) not in crossings)
    return seen


def test_plays_audio_process_never_imports_torch():
    """Everything play's audio process can import, at any time, is free of torch: the
    model loads only in the generator's child (through the one crossing above)."""
    names = reachable(AUDIO_PROCESS)
    assert "singsynth.engine.synth" in names and "singsynth.model.files" in names
    torchy = sorted(n for n in names if n.startswith("singsynth") and
                    any(m == "torch" or m.startswith("torch.") for m in IMPORTS[n]))
    assert not torchy, f"reachable from play's audio process and importing torch: {torchy}"
    assert not any(n == "torch" or n.startswith("torch.") for n in names)


def test_the_crossing_is_the_only_way_to_torch_and_it_leads_there():
    """Without the allowance the graph does reach torch (the check above can fail), and
    only through the lazy source's loader."""
    everything = reachable(AUDIO_PROCESS, crossings=set())
    assert "torch" in everything
    for src, dst in TORCH_CROSSING:
        assert dst in IMPORTS[src]


def test_the_engine_and_generators_import_no_model_or_torch():
    for name, found in IMPORTS.items():
        if layer(name) <= layer("singsynth.engine"):
            bad = sorted(m for m in found if m.startswith(("singsynth.model", "torch")))
            assert not bad, f"{name} imports {bad}"


def test_no_import_cycles():
    """No module reaches itself through imports, those inside functions included (which
    linters do not follow). A package's own __init__ is not counted as an edge of its
    modules: Python runs it first anyway."""
    def edges(name):
        return [m for m in IMPORTS[name] if m.startswith("singsynth.")
                and not name.startswith(m + ".")]
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                cycles.append(sorted(part))
    for name in sorted(IMPORTS):
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"

"""The module dependency check: no import cycles, and no layer importing a higher one.

Every ``import`` of every module of ``lm_eval_ext`` and ``analysis`` counts,
top-level or inside a function (a lazy import is still a dependency). The
layers, lowest first (README, "Layout"):

0. ``lm_eval_ext.conventions`` (flags, console, files, JSONL) and the PassUntil
   statistics (``lm_eval_ext.passuntil.stats``): leaves both packages build on;
1. ``lm_eval_ext.execution`` (the sandbox), ``lm_eval_ext.tasks`` (data and
   prompts), and ``analysis`` (which may import layer 0 of ``lm_eval_ext``
   only);
2. ``lm_eval_ext.passuntil.metrics``/``filters`` and ``lm_eval_ext.registration``
   (lm-eval's API: the engine registers them before it loads a task),
   ``lm_eval_ext.sampling`` (the engine and model backends),
   ``lm_eval_ext.finetune``;
3. ``lm_eval_ext.cli``: the command line;
4. ``lm_eval_ext.lab``: the application on top of everything; nothing imports it.

A module imports only its own layer or lower ones; ``analysis`` and
``lm_eval_ext`` below the lab never import each other except ``analysis`` ->
layer 0.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lm_eval_ext", "analysis")

#: module-name prefix -> layer (the longest matching prefix wins)
LAYERS = {
    "lm_eval_ext": 0,  # the package itself: __version__ and task_dir()
    "lm_eval_ext.conventions": 0,
    "lm_eval_ext.passuntil": 0,  # its __init__ re-exports the statistics
    "lm_eval_ext.passuntil.stats": 0,
    "lm_eval_ext.execution": 1,
    "lm_eval_ext.tasks": 1,
    "analysis": 1,
    "lm_eval_ext.passuntil.metrics": 2,
    "lm_eval_ext.passuntil.filters": 2,
    "lm_eval_ext.sampling": 2,
    "lm_eval_ext.finetune": 2,
    "lm_eval_ext.registration": 2,
    "lm_eval_ext.cli": 3,
    "lm_eval_ext.__main__": 3,
    "lm_eval_ext.lab": 4,
}


#: optional dependencies: a module that needs one may fail to import where it is absent
OPTIONAL = ("vllm", "ray")

#: prefix of a dependency on a module that does not exist
MISSING = "missing:"


def layer(module: str) -> int:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in LAYERS:
            return LAYERS[".".join(parts[:i])]
    raise KeyError(f"{module}: no layer; add its package to LAYERS")


def modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    out = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def imports(mod: str, path: Path, known: dict) -> set[str]:
    """The project's modules that ``mod`` imports. ``from pkg import name``
    depends on ``pkg.name`` when that is a module, else on ``pkg``."""
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[:len(base) - node.level + 1]
                prefix = ".".join(stem + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            subs = [f"{prefix}.{a.name}" for a in node.names]
            targets = [s for s in subs if s in known] or [prefix]
            if any(s not in known for s in subs) and prefix not in targets:
                targets.append(prefix)
        else:
            continue
        for t in targets:
            parts = t.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and ".".join(parts) != mod:
                deps.add(".".join(parts))
            if isinstance(node, ast.ImportFrom) and t.split(".")[0] in PACKAGES and not parts[1:] \
                    and t not in known and node.module and t == prefix:
                deps.add(MISSING + t)  # e.g. a lazy import of a module that moved
    return deps


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def violations(root: Path, packages=PACKAGES) -> list[str]:
    known = modules(root, packages)
    graph = {m: imports(m, p, known) for m, p in known.items()}
    found = [f"import cycle: {' <-> '.join(c)}"
             for c in cycles({m: {d for d in ds if not d.startswith(MISSING)} for m, ds in graph.items()})]
    for m, deps in sorted(graph.items()):
        found += [f"{m} imports {d[len(MISSING):]}, which does not exist" for d in sorted(deps)
                  if d.startswith(MISSING)]
        deps = {d for d in deps if not d.startswith(MISSING)}
        graph[m] = deps
        for d in sorted(deps):
            a, b = m.split(".")[0], d.split(".")[0]
            if a == "analysis" and b == "lm_eval_ext" and layer(d) > 0:
                found.append(f"{m} imports {d}: analysis may use only lm_eval_ext's conventions and statistics")
            elif a == "lm_eval_ext" and b == "analysis" and layer(m) < LAYERS["lm_eval_ext.lab"]:
                found.append(f"{m} imports {d}: only the lab (the top layer) may use analysis")
            elif a == b and layer(d) > layer(m):
                found.append(f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)}): a lower layer "
                             "imports a higher one")
    return found


def test_no_cycles_and_no_upward_imports():
    assert violations(ROOT) == []


def test_every_module_has_a_layer_and_imports_in_a_fresh_interpreter():
    import subprocess
    import sys

    names = sorted(m for m in modules(ROOT) if not m.endswith("__main__"))
    for m in names:
        layer(m)
    # a backend for an optional dependency (vllm, ray) imports only where it is installed
    code = ("import importlib, sys\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m)\n"
            "    except ModuleNotFoundError as e:\n        if (e.name or '').split('.')[0] not in OPTIONAL:\n"
            "            raise\n")
    proc = subprocess.run([sys.executable, "-c", code.replace("OPTIONAL", repr(OPTIONAL)), *names], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("case", ["cycle", "upward", "analysis_uses_engine", "engine_uses_analysis", "missing"])
def test_the_check_fails_on_what_it_forbids(tmp_path, case):
    """The check itself, on small fake trees: each forbidden shape is reported."""
    files = {
        "lm_eval_ext/__init__.py": "",
        "lm_eval_ext/conventions/__init__.py": "",
        "lm_eval_ext/conventions/files.py": "",
        "lm_eval_ext/sampling/__init__.py": "",
        "lm_eval_ext/sampling/adaptive.py": "from ..conventions import files\n",
        "lm_eval_ext/lab/__init__.py": "",
        "lm_eval_ext/lab/pipeline.py": "import analysis.forecast\nfrom ..sampling import adaptive\n",
        "analysis/__init__.py": "",
        "analysis/forecast.py": "from lm_eval_ext.conventions.files import x\n",
    }
    expected = {
        "cycle": ("lm_eval_ext/conventions/files.py", "def f():\n    from ..sampling import adaptive\n",
                  "import cycle"),
        "upward": ("lm_eval_ext/sampling/adaptive.py", "from ..lab import pipeline\n", "a lower layer imports"),
        "analysis_uses_engine": ("analysis/forecast.py", "from lm_eval_ext.sampling.adaptive import y\n",
                                 "analysis may use only"),
        "engine_uses_analysis": ("lm_eval_ext/sampling/adaptive.py", "import analysis.forecast\n",
                                 "only the lab"),
        "missing": ("lm_eval_ext/sampling/adaptive.py", "def f():\n    from ..console import bar\n",
                    "does not exist"),
    }[case]
    for name, text in {**files, expected[0]: files.get(expected[0], "") + expected[1]}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert any(expected[2] in v for v in violations(tmp_path)), violations(tmp_path)
    # and the same tree without the forbidden import is clean
    (tmp_path / expected[0]).write_text(files.get(expected[0], ""))
    assert violations(tmp_path) == []

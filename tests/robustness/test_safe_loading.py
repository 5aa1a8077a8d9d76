"""Safe loading: no code path in ``pathxai/`` or ``app/`` can unpickle or evaluate a user's file.

The scan walks every module's syntax tree (not a text grep, so comments and strings do not
count, and ``model.eval()`` is not ``eval()``) and flags:

- any use of ``pickle``/``cPickle``/``dill``/``shelve``/``marshal``/``joblib`` loading (importing
  ``pickle`` only to name ``pickle.UnpicklingError`` in an ``except`` is allowed);
- ``torch.load(...)`` without ``weights_only=True``; ``torch.jit.load``; ``pandas.read_pickle``;
- ``numpy.load(..., allow_pickle=True)``;
- the builtins ``eval``/``exec``/``compile`` and ``__import__`` with a non-literal name;
- ``yaml.load`` without a safe loader, ``yaml.unsafe_load``/``full_load``.

The scanner itself is tested on known-bad snippets, so the scan can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("pathxai", "app")

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "shelve", "marshal", "cloudpickle"}
_PICKLE_ALLOWED_ATTRS = {"UnpicklingError", "PickleError", "PicklingError"}
_SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ``""``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def scan_source(source: str, filename: str = "<src>") -> list[str]:
    """Return ``file:line: problem`` for every unsafe loading construct in ``source``."""
    tree = ast.parse(source, filename=filename)
    problems: list[str] = []
    aliases: dict[str, str] = {}  # local name -> module it stands for

    def flag(node: ast.AST, what: str) -> None:
        problems.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                root = a.name.split(".")[0]
                aliases[a.asname or root] = a.name if a.asname else root
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            for a in node.names:
                full = f"{node.module}.{a.name}"
                aliases[a.asname or a.name] = full
                if root in _PICKLE_MODULES and a.name not in _PICKLE_ALLOWED_ATTRS:
                    flag(node, f"imports {full}")
                if full in ("torch.load", "numpy.load", "yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                    flag(
                        node,
                        f"imports {full} by name (call it qualified so the scan can check its arguments)",
                    )
                if root == "joblib" and a.name == "load":
                    flag(node, "imports joblib.load (unpickles)")

    def resolve(name: str) -> str:
        head, _, rest = name.partition(".")
        base = aliases.get(head, head)
        return f"{base}.{rest}" if rest else base

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            full = resolve(_dotted(node))
            mod, _, attr = full.rpartition(".")
            if mod.split(".")[0] in _PICKLE_MODULES and attr not in _PICKLE_ALLOWED_ATTRS:
                flag(node, f"uses {full}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        full = resolve(name) if name else ""
        if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "compile"):
            if node.func.id not in aliases:
                flag(node, f"calls builtin {node.func.id}()")
        if isinstance(node.func, ast.Name) and node.func.id == "__import__":
            if not (node.args and isinstance(node.args[0], ast.Constant)):
                flag(node, "calls __import__ with a computed name")
        if full == "torch.load" and not _is_true(_kw(node, "weights_only")):
            flag(node, "torch.load without weights_only=True")
        if full in ("torch.jit.load", "pandas.read_pickle", "joblib.load"):
            flag(node, f"calls {full} (unpickles / runs serialized code)")
        if full == "numpy.load" and _is_true(_kw(node, "allow_pickle")):
            flag(node, "numpy.load with allow_pickle=True")
        if full in ("yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"):
            flag(node, f"calls {full}")
        if full == "yaml.load":
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader).split(".")[-1] not in _SAFE_YAML_LOADERS:
                flag(node, "yaml.load without SafeLoader")
    return problems


def _sources() -> list[Path]:
    files: list[Path] = []
    for top in SCANNED:
        d = REPO / top
        if d.is_dir():
            files += sorted(p for p in d.rglob("*.py") if ".venv" not in p.parts)
    return files


def test_package_has_no_unsafe_loading() -> None:
    files = _sources()
    assert len(files) > 20, "the scan found too few sources; is the repo layout unexpected?"
    problems = [p for f in files for p in scan_source(f.read_text(), str(f.relative_to(REPO)))]
    assert problems == [], "unsafe loading constructs:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle\npickle.loads(b'')",
        "import pickle as p\np.load(open('x', 'rb'))",
        "from pickle import loads",
        "import _pickle\n_pickle.Unpickler",
        "import dill\ndill.loads(b'')",
        "import torch\ntorch.load('m.pt')",
        "import torch\ntorch.load('m.pt', weights_only=False)",
        "import torch as T\nT.load('m.pt', map_location='cpu')",
        "import torch\ntorch.jit.load('m.pt')",
        "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
        "from numpy import load",
        "eval('1+1')",
        "exec('x=1')",
        "compile('x', 'f', 'exec')",
        "__import__(name)",
        "import yaml\nyaml.load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.Loader)",
        "import yaml\nyaml.unsafe_load(text)",
        "import pandas as pd\npd.read_pickle('x')",
        "import joblib\njoblib.load('x')",
        "import shelve\nshelve.open('db')",
    ],
)
def test_scanner_flags_unsafe_code(snippet: str) -> None:
    assert scan_source(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ntorch.load('m.pt', map_location='cpu', weights_only=True)",
        "import numpy as np\nnp.load('a.npy')\nnp.load('a.npz', allow_pickle=False)",
        "model.eval()\nnet.train().eval()",
        "import yaml\nyaml.safe_load(t)\nyaml.load(t, Loader=yaml.SafeLoader)",
        "import pickle\ntry:\n    pass\nexcept pickle.UnpicklingError:\n    pass",
        "# pickle.loads(x) in a comment\ns = 'torch.load(f)'",
        "from safetensors.torch import load_file\nload_file('m.safetensors')",
    ],
)
def test_scanner_accepts_safe_code(snippet: str) -> None:
    assert scan_source(snippet) == [], snippet

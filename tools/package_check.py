# SPDX-License-Identifier: MIT
"""Packaging checks: one version everywhere, every file a package names exists, no assert.

    python tools/package_check.py          all checks; exit 1 and say what is wrong
    python tools/package_check.py --asserts   only the assert check (make mpy runs it)

- versions: `__version__` in lib/smtp_client.py is the one source. package.json and the
  root manifest.py's metadata() must say the same; pyproject.toml reads it (dynamic
  version, attr smtp_client.__version__); each companion's NAME.json matches its module.
- mip: every "urls" entry of package.json and the companions' NAME.json points at a file
  that exists, under the module's own name.
- manifests: the root manifest.py starts with metadata(); it and every boards/*/manifest.py
  are run with MicroPython's manifest functions stood in for, and every module()/include()
  they name must exist. `$(PORT_DIR)`/`$(MPY_DIR)` paths are MicroPython's own and only
  recorded (a build from a MicroPython checkout resolves them).
- asserts: no `assert` in lib/*.py: `mpy-cross -O3` (make mpy) strips them, so an assert
  that carries protocol logic would vanish from the .mpy a board runs.
"""

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
PACKAGES = {  # mip package file -> the module whose __version__ it carries
    "package.json": "smtp_client",
    "smtp_message.json": "smtp_message",
    "smtp_outbox.json": "smtp_outbox",
    "smtp_async.json": "smtp_async",
}


def module_version(name):
    """__version__ of lib/NAME.py, read without importing (as setuptools does)."""
    tree = ast.parse((LIB / (name + ".py")).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


class _Options:
    def __init__(self, kwargs):
        self.__dict__.update(kwargs)

    def defaults(self, **kw):
        for k, v in kw.items():
            self.__dict__.setdefault(k, v)


def run_manifest(path, options=None, seen=None):
    """Run a manifest.py; return {"metadata": [...], "modules": [Path], "external": [str],
    "missing": [str], "first": name of the first call}."""
    path = Path(path).resolve()
    out = seen if seen is not None else {
        "metadata": [], "modules": [], "external": [], "missing": [], "first": {}}
    here = path.parent

    def _resolve(p, base=None):
        if "$(" in p:
            out["external"].append(p)
            return None
        return (Path(base) if base else here).joinpath(p).resolve()

    def metadata(**kw):
        out["metadata"].append((path, kw))

    def module(name, base_path=".", opt=None):
        p = _resolve(name, here / base_path)
        if p is not None:
            (out["modules"] if p.is_file() else out["missing"]).append(p)

    def include(manifest_path, **kw):
        p = _resolve(manifest_path)
        if p is None:
            return
        if p.is_dir():
            p = p / "manifest.py"
        if not p.is_file():
            out["missing"].append(p)
            return
        run_manifest(p, kw, out)

    def require(name, **kw):
        out["external"].append("require:" + name)

    def freeze(p, script=None, opt=None):
        _resolve(p)

    def package(name, files=None, base_path=".", opt=None):
        p = _resolve(name, here / base_path)
        if p is not None:
            (out["modules"] if p.is_dir() else out["missing"]).append(p)

    src = path.read_text()
    tree = ast.parse(src)
    first = next((n.value.func.id for n in tree.body if isinstance(n, ast.Expr)
                  and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name)),
                 None)
    out["first"][path] = first
    scope = dict(metadata=metadata, module=module, include=include, require=require,
                 freeze=freeze, package=package, options=_Options(options or {}))
    exec(compile(tree, str(path), "exec"), scope)  # noqa: S102 (our own manifest files)
    return out


def check_versions():
    errors = []
    version = module_version("smtp_client")
    if not version:
        return ["lib/smtp_client.py has no __version__"]
    for pkg, mod in PACKAGES.items():
        want = module_version(mod)
        got = json.loads((ROOT / pkg).read_text()).get("version")
        if got != want:
            errors.append(f"{pkg}: version {got!r}, but lib/{mod}.py says {want!r}")
    meta = run_manifest(ROOT / "manifest.py")["metadata"]
    got = meta[0][1].get("version") if meta else None
    if got != version:
        errors.append(f"manifest.py: metadata version {got!r}, __version__ is {version!r}")
    py = (ROOT / "pyproject.toml").read_text()
    if 'dynamic = ["version"]' not in py or 'attr = "smtp_client.__version__"' not in py:
        errors.append("pyproject.toml: version must be dynamic from smtp_client.__version__")
    return errors


def check_mip():
    errors = []
    for pkg in PACKAGES:
        data = json.loads((ROOT / pkg).read_text())
        for target, url in data.get("urls", ()):
            src = ROOT / url
            if not src.is_file():
                errors.append(f"{pkg}: {url} does not exist")
            elif Path(target).name != src.name:
                errors.append(f"{pkg}: {url} installed as {target}")
        if data.get("deps"):
            errors.append(f"{pkg}: deps must stay empty (the files are all in this repo)")
    return errors


def check_manifests():
    errors = []
    manifests = [ROOT / "manifest.py"] + sorted((ROOT / "boards").glob("*/manifest.py"))
    for m in manifests:
        r = run_manifest(m)
        rel = m.relative_to(ROOT)
        for p in r["missing"]:
            errors.append(f"{rel}: names {p}, which does not exist")
        if not r["modules"]:
            errors.append(f"{rel}: freezes nothing")
    root = run_manifest(ROOT / "manifest.py")
    if root["first"][(ROOT / "manifest.py").resolve()] != "metadata":
        errors.append("manifest.py: the first statement must be metadata(...)")
    return errors


def asserts(source, name="<source>"):
    """Line numbers of assert statements in source."""
    return [n.lineno for n in ast.walk(ast.parse(source, name)) if isinstance(n, ast.Assert)]


def check_asserts():
    return [f"{p.relative_to(ROOT)}:{line}: assert (mpy-cross -O3 strips it; raise instead)"
            for p in sorted(LIB.glob("*.py")) for line in asserts(p.read_text(), str(p))]


CHECKS = (check_versions, check_mip, check_manifests, check_asserts)


def main(argv=()):
    checks = (check_asserts,) if "--asserts" in argv else CHECKS
    errors = [e for check in checks for e in check()]
    for e in errors:
        print(e)
    print(f"package_check: {len(errors)} problem(s)" if errors else "package_check: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

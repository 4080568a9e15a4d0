# SPDX-License-Identifier: MIT
"""Packaging checks: one version everywhere, every file a package names exists, no assert.

    python tools/package_check.py          all checks; exit 1 and say what is wrong
    python tools/package_check.py --asserts   only the assert check (make mpy runs it)

- versions: `__version__` in lib/smtp_client.py is the one source. package.json and the
  root manifest.py's metadata() must say the same; pyproject.toml reads it (dynamic
  version, attr smtp_client.__version__); each companion's NAME.json matches its module.
  The modules that ship with the core (CORE, CPYTHON_ONLY) carry the core's version: if one
  defines `__version__`, it must be the core's.
- files: every lib/*.py is in exactly one of CORE (installed wherever smtp_client is),
  CPYTHON_ONLY (the pip wheel only; MicroPython never loads it), COMPANIONS (opt-in) or
  MICROPYTHON_ONLY (a mip package of its own, never in the wheel).
  - mip: package.json installs CORE; each companion's NAME.json installs the companion and
    CORE; so does each MICROPYTHON_ONLY module's package file; every "urls" entry points
    at a file that exists, under the module's own name.
  - manifests: the root manifest.py starts with metadata(); it and every boards/*/manifest.py
    are run with MicroPython's manifest functions stood in for, and every module()/include()
    they name must exist. `$(PORT_DIR)`/`$(MPY_DIR)` paths are MicroPython's own and only
    recorded (a build from a MicroPython checkout resolves them). The root manifest freezes
    CORE by default and each companion under its option; no manifest freezes CPYTHON_ONLY,
    and one that freezes smtp_client freezes all of CORE.
  - pyproject.toml: py-modules lists every lib/*.py but MICROPYTHON_ONLY and NATIVE (the
    wheel is for CPython: it needs CPYTHON_ONLY as well as CORE and the companions, must not
    shadow a standard library module such as smtplib, and cannot import viper code).
  tools/deploy takes its module lists from here (CORE by default, `--with` COMPANIONS).
- asserts: no `assert` in lib/*.py: `mpy-cross -O3` (make mpy) strips them, so an assert
  that carries protocol logic would vanish from the .mpy a board runs.
"""

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
# smtp_client and what it imports by itself on MicroPython (smtp_errors: the text of its
# errors; smtp_ext: rarely used features; each loaded on first use). Flash is cheap and a
# module costs RAM only once imported, so these go wherever the core goes: mip, the
# manifest, tools/deploy, the wheel.
CORE = ("smtp_client", "smtp_errors", "smtp_ext")
# The core imports these on CPython and CircuitPython only (their sockets): the wheel has
# them, and CircuitPython users copy them beside smtp_client.py; MicroPython never loads
# them, so mip, the manifests and tools/deploy leave them out.
CPYTHON_ONLY = ("smtp_cpython",)
# Opt-in modules: their mip package, their manifest option, their tools/deploy --with name.
COMPANIONS = {  # module -> (mip package file, root manifest.py option, deploy --with name)
    "smtp_message": ("smtp_message.json", "message", "message"),
    "smtp_outbox": ("smtp_outbox.json", "outbox", "outbox"),
    "smtp_async": ("smtp_async.json", "asyncio", "async"),
    "smtp_native": ("smtp_native.json", "native", "native"),
}
# CPython's smtplib surface for MicroPython (lib/smtplib.py): opt-in through its own mip
# package (with the core). Never in the pip wheel: CPython has its own smtplib, which a module
# of that name would shadow.
MICROPYTHON_ONLY = {"smtplib": "smtplib.json"}  # module -> mip package file
# Companions of viper machine code: one .mpy per architecture (mpy-cross -march=ARCH, by
# tools/build_native.py and tools/deploy).
NATIVE = ("smtp_native",)
PACKAGES = {"package.json": "smtp_client"}  # mip package file -> its module (__version__)
PACKAGES.update({pkg: mod for mod, (pkg, _, _) in COMPANIONS.items()})
PACKAGES.update({pkg: mod for mod, pkg in MICROPYTHON_ONLY.items()})


def module_version(name):
    """__version__ of lib/NAME.py, read without importing (as setuptools does); None when
    the file or the assignment is missing (check_modules names a missing file)."""
    path = LIB / (name + ".py")
    if not path.is_file():
        return None
    tree = ast.parse(path.read_text())
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


def lib_modules():
    """The module names of lib/*.py."""
    return sorted(p.stem for p in LIB.glob("*.py"))


def check_modules():
    """Every lib module is packaged as exactly one kind, and every listed one exists."""
    kinds = [("CORE", m) for m in CORE] + [("CPYTHON_ONLY", m) for m in CPYTHON_ONLY]
    kinds += [("COMPANIONS", m) for m in COMPANIONS]
    kinds += [("MICROPYTHON_ONLY", m) for m in MICROPYTHON_ONLY]
    errors = [f"package_check.py: {kind} names {m}, but lib/{m}.py does not exist"
              for kind, m in kinds if not (LIB / (m + ".py")).is_file()]
    listed = [m for _, m in kinds]
    for m in lib_modules():
        if m not in listed:
            errors.append(f"lib/{m}.py is in no package: add it to CORE, CPYTHON_ONLY, "
                          f"COMPANIONS or MICROPYTHON_ONLY in tools/package_check.py, then to "
                          f"the package files")
        elif listed.count(m) > 1:
            errors.append(f"package_check.py: lib/{m}.py is listed as more than one kind")
    return errors


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
    for mod in CORE + CPYTHON_ONLY:  # shipped with the core: its version, if they say one
        if mod != "smtp_client" and (LIB / (mod + ".py")).is_file():
            got = module_version(mod)
            if got is not None and got != version:
                errors.append(f"lib/{mod}.py: __version__ {got!r} (it ships with "
                              f"smtp_client {version!r})")
    meta = run_manifest(ROOT / "manifest.py")["metadata"]
    got = meta[0][1].get("version") if meta else None
    if got != version:
        errors.append(f"manifest.py: metadata version {got!r}, __version__ is {version!r}")
    py = (ROOT / "pyproject.toml").read_text()
    if 'dynamic = ["version"]' not in py or 'attr = "smtp_client.__version__"' not in py:
        errors.append("pyproject.toml: version must be dynamic from smtp_client.__version__")
    return errors


def _names(modules):
    return sorted(m + ".py" for m in modules)


def mip_files(pkg):
    """What mip installs from a package file: the target names of its "urls"."""
    return sorted(target for target, _ in json.loads((ROOT / pkg).read_text()).get("urls", ()))


def check_mip():
    errors = []
    for pkg, mod in PACKAGES.items():
        data = json.loads((ROOT / pkg).read_text())
        for target, url in data.get("urls", ()):
            src = ROOT / url
            if not src.is_file():
                errors.append(f"{pkg}: {url} does not exist")
            elif target != src.name:  # flat: the module imports by its own name
                errors.append(f"{pkg}: {url} installed as {target}")
        want = _names(CORE + ((mod,) if mod in COMPANIONS or mod in MICROPYTHON_ONLY else ()))
        got = mip_files(pkg)
        if got != want:
            errors.append(f"{pkg}: installs {', '.join(got) or 'nothing'}; "
                          f"it must install {', '.join(want)}")
        if data.get("deps"):
            errors.append(f"{pkg}: deps must stay empty (the files are all in this repo)")
    return errors


def frozen_lib(result):
    """The lib/ module names a run_manifest() result freezes, sorted."""
    lib = LIB.resolve()
    return sorted(p.name for p in result["modules"] if p.parent == lib)


def check_manifests():
    errors = []
    root_manifest = ROOT / "manifest.py"
    runs = [(root_manifest, "manifest.py", None)]
    for _, option, _ in COMPANIONS.values():
        runs.append((root_manifest, f"manifest.py ({option}=True)", {option: True}))
    everything = {option: True for _, option, _ in COMPANIONS.values()}
    runs.append((root_manifest, "manifest.py (every option)", everything))
    runs += [(m, str(m.relative_to(ROOT)), None)
             for m in sorted((ROOT / "boards").glob("*/manifest.py"))]
    for m, rel, options in runs:
        r = run_manifest(m, options)
        for p in r["missing"]:
            errors.append(f"{rel}: names {p}, which does not exist")
        if not r["modules"]:
            errors.append(f"{rel}: freezes nothing")
        frozen = frozen_lib(r)
        for bad in sorted(set(frozen) & set(_names(CPYTHON_ONLY))):
            errors.append(f"{rel}: freezes {bad}, which MicroPython never loads")
        if m == root_manifest:  # exactly the core and the companions asked for
            on = [mod for mod, (_, option, _) in COMPANIONS.items() if (options or {}).get(option)]
            want = _names(CORE + tuple(on))
            if frozen != want:
                errors.append(f"{rel}: freezes {', '.join(frozen) or 'nothing'}; "
                              f"it must freeze {', '.join(want)}")
        elif "smtp_client.py" in frozen:
            for miss in sorted(set(_names(CORE)) - set(frozen)):
                errors.append(f"{rel}: freezes smtp_client.py without {miss}")
    root = run_manifest(root_manifest)
    if root["first"][root_manifest.resolve()] != "metadata":
        errors.append("manifest.py: the first statement must be metadata(...)")
    return errors


def wheel_modules():
    """[tool.setuptools] py-modules of pyproject.toml, sorted."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the one line is enough
        import re

        m = re.search(r"^py-modules\s*=\s*\[([^\]]*)\]", text, re.M)
        return sorted(re.findall(r'"([^"]+)"', m.group(1))) if m else []
    return sorted(tomllib.loads(text).get("tool", {}).get("setuptools", {})
                  .get("py-modules", []))


def check_pyproject():
    got = wheel_modules()
    # Not in the wheel: MicroPython's smtplib, and viper code (no CPython can import it).
    left_out = list(MICROPYTHON_ONLY) + list(NATIVE)
    want = [m for m in lib_modules() if m not in left_out]
    if got != want:
        return [f"pyproject.toml: py-modules is {', '.join(got) or 'empty'}; the wheel must "
                f"carry every lib/*.py but {', '.join(left_out)}: {', '.join(want)}"]
    return []


def asserts(source, name="<source>"):
    """Line numbers of assert statements in source."""
    return [n.lineno for n in ast.walk(ast.parse(source, name)) if isinstance(n, ast.Assert)]


def check_asserts():
    return [f"{p.relative_to(ROOT)}:{line}: assert (mpy-cross -O3 strips it; raise instead)"
            for p in sorted(LIB.glob("*.py")) for line in asserts(p.read_text(), str(p))]


CHECKS = (check_modules, check_versions, check_mip, check_manifests, check_pyproject,
          check_asserts)


def main(argv=()):
    checks = (check_asserts,) if "--asserts" in argv else CHECKS
    errors = [e for check in checks for e in check()]
    for e in errors:
        print(e)
    print(f"package_check: {len(errors)} problem(s)" if errors else "package_check: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

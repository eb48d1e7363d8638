"""Run by pyperf_compare.py in the target interpreter: prints JSON describing that interpreter, pyperf,
pyperformance and its benchmarks. Runs on any Python pyperf_compare.py measures (3.10 and later)."""

import json, os, re, sys, sysconfig
out = {
    "version": sys.version.split()[0],
    "version_info": list(sys.version_info[:3]),
    "implementation": sys.implementation.name,
    "executable": sys.executable,
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "errors": [],
}
try:
    import pyperf
    out["pyperf_version"] = pyperf.__version__
except Exception as exc:
    out["errors"].append("pyperf: %s: %s" % (type(exc).__name__, exc))
try:
    import pyperformance
    out["pyperformance_version"] = getattr(pyperformance, "__version__", "?")
except Exception as exc:
    out["errors"].append("pyperformance: %s: %s" % (type(exc).__name__, exc))
    pyperformance = None
try:
    import pymimalloc
    out["pymimalloc_version"] = getattr(pymimalloc, "__version__", "?")
    out["mimalloc_version"] = getattr(pymimalloc, "mimalloc_version", "?")
except Exception as exc:
    out["pymimalloc_error"] = "%s: %s" % (type(exc).__name__, exc)
if pyperformance is not None:
    try:
        import importlib.resources
        bdir = str(importlib.resources.files("pyperformance").joinpath("data-files", "benchmarks"))
    except Exception:
        bdir = os.path.join(os.path.dirname(pyperformance.__file__), "data-files", "benchmarks")
    out["benchmarks_dir"] = bdir
    try:
        import tomllib
    except ImportError:
        import tomli as tomllib
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:
        SpecifierSet = None
    import importlib.metadata as md

    def load(path):
        with open(path, "rb") as f:
            return tomllib.load(f)

    def req_names(reqs):
        names = []
        for r in reqs:
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)
            if m and not r.lstrip().startswith("#"):
                names.append(m.group(1))
        return names

    manifest = {}
    section = None
    try:
        lines = open(os.path.join(bdir, "MANIFEST"), encoding="utf-8").read().splitlines()
    except OSError as exc:
        out["errors"].append("pyperformance MANIFEST: %s" % exc)
        lines = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            section = line.strip("[]").strip()
            continue
        if section != "benchmarks":
            continue
        parts = line.split()
        if len(parts) != 2 or parts == ["name", "metafile"]:
            continue
        name, metafile = parts
        if metafile == "<local>":
            bmdir, meta = os.path.join(bdir, "bm_" + name), "pyproject.toml"
        elif metafile.startswith("<local:"):
            bmdir = os.path.join(bdir, "bm_" + metafile[7:-1])
            meta = "bm_%s.toml" % name
        else:
            meta_path = os.path.join(bdir, metafile)
            bmdir, meta = os.path.dirname(meta_path), os.path.basename(meta_path)
        entry = {"dir": bmdir, "problems": []}
        try:
            data = load(os.path.join(bmdir, meta))
            base = load(os.path.join(bmdir, "pyproject.toml")) if meta != "pyproject.toml" else {}
        except Exception as exc:
            entry["problems"].append("cannot read %s: %s" % (meta, exc))
            manifest[name] = entry
            continue
        tool = dict(base.get("tool", {}).get("pyperformance", {}))
        tool.update(data.get("tool", {}).get("pyperformance", {}))
        project = dict(base.get("project", {}))
        project.update(data.get("project", {}))
        entry["runscript"] = os.path.join(bmdir, tool.get("runscript") or "run_benchmark.py")
        entry["extra_opts"] = list(tool.get("extra_opts") or [])
        deps = req_names(project.get("dependencies") or [])
        req_file = os.path.join(bmdir, "requirements.txt")
        if os.path.exists(req_file):
            deps += req_names(open(req_file, encoding="utf-8").read().splitlines())
        missing = []
        deps = list({re.sub(r"[-_.]+", "-", d).lower(): d for d in deps}.values())
        for dep in deps:
            try:
                md.distribution(dep)
            except Exception:
                missing.append(dep)
        entry["dependencies"] = deps
        if missing:
            entry["problems"].append("needs packages not installed in this interpreter: "
                                     + ", ".join(missing))
        rp = project.get("requires-python")
        if rp and SpecifierSet is not None and out["version"] not in SpecifierSet(rp):
            entry["problems"].append("requires Python %s" % rp)
        if not os.path.exists(entry["runscript"]):
            entry["problems"].append("missing %s" % entry["runscript"])
        manifest[name] = entry
    out["manifest"] = manifest
print(json.dumps(out))

"""Import paths (``module:attribute``): how spaces and objectives travel as plain text.

Workers find the objective by its import path instead of a pickle, so nothing
executable is stored in the database and workers never depend on pickle
compatibility between package versions.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any, Callable

from caviar.errors import CaviarError


def import_attr(path: str, what: str = "object") -> Any:
    """Import ``module:attr.sub`` and return the attribute, or raise CaviarError."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise CaviarError(f"{what} {path!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CaviarError(f"cannot import module {module_name!r} for {what} {path!r}: {err}") from err
    except Exception as err:  # a broken user module: syntax error, failing import-time code
        raise CaviarError(f"module {module_name!r} for {what} {path!r} failed to load: {type(err).__name__}: {err}") from err
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CaviarError(f"module {module_name!r} has no attribute {qualname!r} ({what} {path!r})") from None
    return obj


def import_path_of(fn: Callable[..., Any]) -> str:
    """Return the ``module:qualname`` that imports ``fn`` back, or raise CaviarError.

    Lambdas, closures and functions defined in ``__main__`` cannot be found by a
    worker in another process, so they are refused with a message saying why.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname:
        raise CaviarError(f"objective {fn!r} has no module and name: pass a module-level function")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise CaviarError(
            f"objective {module}.{qualname} is a lambda or closure: workers import the objective "
            "by name, so define it as a module-level function"
        )
    if module == "__main__":
        raise CaviarError(
            f"objective {qualname} is defined in __main__: workers import the objective by name, "
            "so put it in an importable module"
        )
    path = f"{module}:{qualname}"
    if import_attr(path, what="objective") is not fn:
        raise CaviarError(f"objective {path} does not import back to the same function")
    return path


class _DeferredModule(types.ModuleType):
    """A submodule whose code runs on the first lookup of one of its names."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        spec = self.__dict__.pop("_deferred_spec")
        self.__class__ = types.ModuleType  # from here on an ordinary module
        spec.loader.exec_module(self)
        return getattr(self, attr)


def defer_submodule(name: str) -> None:
    """Run the submodule ``name`` only when first used, not when its package imports it.

    hyperopt's ``__init__`` imports ``hyperopt.atpe``, which alone pulls in
    scipy.stats: 0.4 s of every master's start-up, for an algorithm Caviar never
    uses. Deferred, it still works for whoever does use it.
    """
    if name in sys.modules:
        return
    package_spec = importlib.util.find_spec(name.rpartition(".")[0])  # finds a package without importing it
    if package_spec is None or not package_spec.submodule_search_locations:
        return
    spec = importlib.machinery.PathFinder.find_spec(name, package_spec.submodule_search_locations)
    if spec is None or spec.loader is None:
        return
    module = _DeferredModule(name)
    module.__spec__, module.__file__, module.__loader__ = spec, spec.origin, spec.loader
    module.__package__ = name.rpartition(".")[0]
    module.__dict__["_deferred_spec"] = spec
    sys.modules[name] = module

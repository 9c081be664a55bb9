"""Named tables: NAME -> "package.module:attribute", imported only when that name is asked for.

The one convention of npflows' three registries: the gradient-audit cases
(npflows/testing/cases/__init__.py), the experiments of `npflows train` (runners/registry.py)
and the reproductions of `npflows reproduce` (runners/reproduce.py). A table lists its entries
explicitly (nothing registers itself by being imported), and its lookup `resolve` also accepts
a user's own `package.module:attribute` (the current directory is importable, as with
`python -m`). Every lookup failure is a ConfigError: one `npflows: error:` line, exit code 2.
"""

import importlib
import os
import sys
from collections.abc import Mapping

from .errors import ConfigError


def _names_missing(error, module_name):
    """True when `error` says the module itself (or a package above it) is missing, not
    something the module imports (that is the module's bug and keeps its traceback)."""
    return error.name is not None and (module_name + ".").startswith(error.name + ".")


def _import(module_name, owner):
    for attempt in range(2):
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if not _names_missing(error, module_name):
                raise
            if attempt == 0 and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # `npflows ... pkg.mod:attr` from the project root
                continue
            raise ConfigError(
                f"{owner}: no module {module_name!r} on sys.path or in the current "
                f"directory {os.getcwd()}"
            ) from None


def load(target, owner="registry"):
    """The object that `target` ("package.module:attribute") names; ConfigError if none."""
    module_name, separator, attribute = target.partition(":")
    if not (separator and module_name and attribute):
        raise ConfigError(f"{owner}: expected package.module:attribute, got {target!r}")
    value = getattr(_import(module_name, owner), attribute, None)
    if value is None:
        raise ConfigError(f"{owner}: module {module_name!r} has no attribute {attribute!r}")
    return value


class Table(Mapping):
    """NAME -> "package.module:attribute" (or the object itself, for entries added at run time).

    As a Mapping, `table[name]` is the imported object (KeyError for a name not in the table),
    so `for name, value in table.items()` enumerates them; `resolve` is the user-facing lookup.
    """

    def __init__(self, owner, kind, entries, listed_by=None):
        self.owner, self.kind = owner, kind  # "reproduce", "reproduction": for the messages
        self.listed_by = listed_by  # a command that lists a table too long for one message
        self._entries = dict(entries)

    def __getitem__(self, name):
        target = self._entries[name]
        return load(target, self.owner) if isinstance(target, str) else target

    def __contains__(self, name):  # without importing the entry
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def names(self):
        return sorted(self._entries)

    def add(self, name, target):
        """A new entry (a user's case, say); refuses to replace one."""
        if name in self._entries:
            raise ValueError(f"{self.owner}: {self.kind} {name!r} is already in the table")
        self._entries[name] = target

    def resolve(self, name):
        """The object for a NAME of the table or for a `package.module:attribute`."""
        if name in self._entries:
            return self[name]
        if ":" not in name:
            known = (
                f"a name that `{self.listed_by}` prints"
                if self.listed_by
                else f"one of [{', '.join(self.names())}]"
            )
            raise ConfigError(
                f"{self.owner}: unknown {self.kind} {name!r}; expected {known} "
                "or package.module:attribute"
            )
        return load(name, self.owner)

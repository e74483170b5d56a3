"""``self.out``: a service's outgoing connections, by kind and name.

``self.out.<kind>[name]`` returns the connection of that kind and name from the snapshot the
invocation runs on (``connections.base.OutgoingTable``), for every registered kind; a dotted
kind reads as attributes (``self.out.hl7.fhir[name]``), and Zato's spellings registered as
aliases work too (``self.outgoing.plain_http[name]``). ``.get(name)`` is the same lookup. A type
that registers a ``kind_api`` hook (``connections.base.ConnectionType``) decides what
``self.out.<kind>`` is, given this module's view of the kind.

A name that does not exist raises ``ConnectionNotFound`` (500) and an inactive connection
``ConnectionUnavailable`` (503), each naming the kind and the connection; a kind that is not
installed is an ``AttributeError`` that lists the installed ones. Services never see a row or
a credential: only the connection its type built.
"""

from __future__ import annotations

from typing import Any


class Kind:
    """``self.out.<kind>``: the connections of one kind, by name."""

    __slots__ = ("_kind", "_table")

    def __init__(self, table: Any, kind: str) -> None:
        self._table, self._kind = table, kind

    def __getitem__(self, name: str) -> Any:
        return self._table.get(self._kind, name)

    def get(self, name: str) -> Any:
        return self._table.get(self._kind, name)

    def __contains__(self, name: object) -> bool:
        return name in self._table.names(self._kind)

    def keys(self) -> list[str]:
        return self._table.names(self._kind)

    def __repr__(self) -> str:
        return f"<outgoing {self._kind} connections: {', '.join(self.keys()) or 'none'}>"


class Namespace:
    """``self.out`` (and each level of a dotted kind): kinds as attributes."""

    def __init__(self, children: dict[str, Any], path: str = "") -> None:
        self._children = children
        self._path = path

    @classmethod
    def over(cls, table: Any) -> Namespace:
        """The tree of every kind and alias of ``table`` (``hl7.fhir`` -> ``hl7`` -> ``fhir``)."""
        tree: dict[str, Any] = {}
        for kind in [*table.kinds(), *table.aliases]:
            node = tree
            *parents, leaf = kind.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            view = Kind(table, kind)
            api = table.kind_api(kind)
            node[leaf] = api(view) if api is not None else view
        return cls._from_tree(tree, "")

    @classmethod
    def _from_tree(cls, tree: dict[str, Any], path: str) -> Namespace:
        children = {name: cls._from_tree(value, f"{path}{name}.") if isinstance(value, dict) else value
                    for name, value in tree.items()}
        return cls(children, path)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._children[name]
        except KeyError:
            installed = ", ".join(sorted(self._children)) or "none"
            raise AttributeError(f"No outgoing connection type `{self._path}{name}` is installed "
                                 f"(installed: {installed})") from None

    def __dir__(self) -> list[str]:
        return sorted(self._children)

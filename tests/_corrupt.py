"""Shared pieces of the corrupted-document property tests (graph, scenario and plan files)."""

from hypothesis import strategies as st


def json_values(*words: str, text: int = 3):
    """Any small JSON value, with some words the document's own fields use."""
    return st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True)
                        | st.text(max_size=text) | st.sampled_from(list(words)),
                        lambda kids: st.lists(kids, max_size=3)
                        | st.dictionaries(st.text(max_size=text), kids, max_size=3), max_leaves=6)


def positions(doc, prefix=()):
    """Every (container, key) position inside a JSON document."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for k, v in items:
        yield prefix + (k,)
        if isinstance(v, (dict, list)):
            yield from positions(v, prefix + (k,))


def corrupt(data, doc, values, where=lambda position: True) -> None:
    """Delete one field of ``doc`` or replace it with a drawn JSON value (in place).

    ``where`` filters the positions that may be corrupted.
    """
    *head, last = data.draw(st.sampled_from([p for p in positions(doc) if where(p)]))
    node = doc
    for k in head:
        node = node[k]
    if data.draw(st.booleans()) and isinstance(node, dict):
        del node[last]
    else:
        node[last] = data.draw(values)

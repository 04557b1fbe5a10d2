"""Felix's calculation graph: datastore state in, ``calc_pb2`` messages out, no I/O.

Read top-down: ``dispatcher`` (datastore keys -> typed calls) -> ``graph`` (indexes,
dirty tracking) -> resolvers (``config``, ``hosts``, ``routes``, ``bgp``) ->
``sequencer`` (ordering, coalescing, InSync). ``pipeline`` wires them together.
"""

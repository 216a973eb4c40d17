"""GPM's layer-wise memory, :class:`~kaplinskiy.LayerwiseMemory` (:mod:`~kaplinskiy.memory.layerwise.memory`), in
pieces: which layers it covers (``coverage``), what their inputs are (``inputs``), recording them (``recording``) and
the uses of their weights outside their calls (``outside_uses``), growing and holding the bases (``bases``,
eq:energy_basis) and projecting with them (``projection``, eq:layerwise_projection).

May import: what :mod:`kaplinskiy.memory` may, and :mod:`kaplinskiy.memory.base`.
"""

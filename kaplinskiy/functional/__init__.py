"""The paper's equations on plain tensors: the potential (eq:potential), the projected direction (eq:projected),
the Armijo acceptance (eq:armijo), one step of potential descent, and GPM's energy-threshold update of a basis
(eq:energy_basis). No optimizer and no state: the optimizers, memories and experiments share these functions.

May import: torch and :mod:`kaplinskiy._tensor_lists`; nothing else of the library.
"""

"""Layer 0: where and how tensors run (device, precision, modes, seeding) and exact state copies.

Imports no other ftkit layer.
"""

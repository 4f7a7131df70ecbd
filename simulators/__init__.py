"""Simulated CNAPS2 counterparties: the national processing centre (NPC) and peer banks.

The simulator is its own process (`paygate simulate npc`) and speaks to the gateway over
the same HTTP link, envelopes, codec and signatures the real system would use. See
docs/simulator.md for its control API, command line and fault injection.
"""

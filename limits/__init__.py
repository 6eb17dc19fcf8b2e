"""Rate limits and quotas: algorithms, reservations and their stores (memory, Redis)."""

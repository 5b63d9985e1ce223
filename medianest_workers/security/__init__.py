"""Secrets at rest and in transit: MediaNest-compatible crypto, key rotation, guards."""

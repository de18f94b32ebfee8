"""A worker: pulls trials from a store, runs them in lanes, records their outcomes, reclaims dead leases."""

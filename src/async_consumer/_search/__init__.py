"""Search: priors in Orion's syntax, samplers and pruners, and the search the store holds."""

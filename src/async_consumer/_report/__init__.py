"""The self-contained HTML report of a run: data from the store, charts and the page."""

"""User-facing jobs: showcases, training studies and the reports they write."""

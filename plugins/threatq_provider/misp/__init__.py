"""misp package."""

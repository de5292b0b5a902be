"""elasticsearch package."""

"""cgc graph definitions (YAML), shipped as package data."""

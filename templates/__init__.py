"""cgc cuTile kernel templates (jinja2), shipped as package data."""

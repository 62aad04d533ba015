"""cgc's OpenAI-compatible server: continuous batching over a plan's slots, chat templates.

Needs the runtime plus the `serve` extra (starlette, uvicorn) and jinja2; never the compiler or
cuda.tile, so `python -m server PLAN` runs wherever the runtime does.
"""

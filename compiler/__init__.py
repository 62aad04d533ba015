"""cgc compiler: YAML graph -> IR -> passes -> specialized kernels -> plan (msgpack)."""

__version__ = "0.1.0"

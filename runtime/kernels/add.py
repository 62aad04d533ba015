"""NumPy reference of templates/add.py.jinja."""


def add(constants, a, b, out):
    """a + b."""
    out.write(a.read() + b.read())

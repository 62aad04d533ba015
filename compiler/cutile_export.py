"""Render a kernel template, export it to a cubin for one SM through cuTile, cache it on disk.

The cache key hashes the kernel alone: the rendered source, the operand signature and the SM.
Each entry records the cuda-tile and tileiras versions that produced it; where cuda-tile is
installed an entry from another toolchain is compiled again, and where it is not (a GPU machine
that only runs plans) any entry is used, so a cache filled elsewhere serves it without importing
cuda.tile at all. The block size is read from the cubin (ELF section `.nv.info.<symbol>`,
attribute EIATTR_REQNTID): the compiler fixes it, and launching with any other fails.
"""

import hashlib
import importlib.util
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from functools import lru_cache

import jinja2

EIATTR_REQNTID = 0x10
EIATTR_KPARAM_INFO = 0x17
EIATTR_KPARAM_INFO_V2 = 0x45
_EIFMT_SVAL = 4


class KernelExportError(Exception):
    """cuTile or tileiras failed on a kernel (message names template, constants and SM)."""


class KernelNotCachedError(KernelExportError):
    """A kernel is not in the cache and this machine has no cuda-tile to compile it."""


@dataclass(frozen=True)
class ExportedKernel:
    """A cubin with its entry symbol and the block size it must be launched with."""

    symbol: str
    block_threads: int
    cubin: bytes
    toolchain: tuple = ()  # ((package, version), ...) of the cuda-tile and tileiras that produced it


@dataclass(frozen=True)
class KernelKey:
    """What makes one exported kernel: template, its full constants (tiles included), the operand
    signature and the SM. Hashable, so equal specializations share one export."""

    template: str
    constants: tuple
    operands: tuple
    sm: int

    @classmethod
    def of(cls, template, constants, operands, sm):
        """The key of `template` specialized with a constants dict for `operands` on `sm`."""
        frozen = tuple(sorted((name, tuple(value) if isinstance(value, list) else value)
                              for name, value in constants.items()))
        return cls(template, frozen, tuple(tuple(_freeze(part) for part in o) for o in operands), int(sm))

    def export(self, cache_dir):
        """export_cubin of this key."""
        return export_cubin(self.template, dict(self.constants), list(self.operands), self.sm, cache_dir)


def _freeze(value):
    return tuple(value) if isinstance(value, list) else value


def templates_dir():
    """The folder of the kernel templates shipped with cgc."""
    return os.path.dirname(os.path.abspath(__import__("templates").__file__))


@lru_cache(maxsize=1)
def _environment():
    return jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir()), trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(template, constants):
    """The cuTile Python source of `template` specialized with `constants`."""
    try:
        return _environment().get_template(f"{template}.py.jinja").render(**constants)
    except jinja2.TemplateNotFound:
        raise KernelExportError(f"no kernel template '{template}' in {templates_dir()}") from None
    except jinja2.UndefinedError as exc:
        raise KernelExportError(f"template '{template}' with constants {constants}: {exc.message}") from None


@lru_cache(maxsize=1)
def toolchain_versions():
    """Installed versions of cuda-tile and its tileiras compiler (None where absent)."""
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for package in ("cuda-tile", "nvidia-cuda-tileiras"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def toolchain_installed():
    """Whether this machine can compile kernels (cuda-tile is installed)."""
    return toolchain_versions().get("cuda-tile") is not None


def _toolchain_tuple(versions):
    return tuple(sorted((package, version) for package, version in versions.items()))


def cache_key(source, operands, sm):
    """Content hash naming a cubin in the cache: the kernel, not the machine reading the cache."""
    payload = json.dumps([source, [list(o) for o in operands], sm], sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()


def export_cubin(template, constants, operands, sm, cache_dir):
    """The cubin of `template` for `sm`.

    `operands` lists each array parameter as (dtype, ndim) or (dtype, ndim, base alignment in
    bytes, stride divisibility in elements of each dim but the last); the last dim's stride is
    taken to be 1 when alignment facts are given. Every template takes arrays only (lengths and
    positions are read from device memory), so there are no scalar parameters."""
    source = render(template, constants)
    try:
        return export_source(template, source, operands, sm, cache_dir)
    except KernelNotCachedError:
        raise
    except KernelExportError as exc:
        raise KernelExportError(f"exporting template '{template}' for sm_{sm} with constants {constants} "
                                f"failed: {exc}") from None


def export_source(name, source, operands, sm, cache_dir):
    """The cubin of the cuTile module `source` (its `kernel`), exported under symbol prefix `name`
    for `sm` (operands as export_cubin's), through the same cache."""
    key = cache_key(source, operands, sm)
    cubin_path, meta_path = (os.path.join(cache_dir, f"{key}.{ext}") for ext in ("cubin", "json"))
    cached = _read_entry(cubin_path, meta_path)
    installed = _toolchain_tuple(toolchain_versions())
    if cached is not None and (not toolchain_installed() or cached.toolchain == installed):
        return cached
    if not toolchain_installed():
        raise KernelNotCachedError(f"kernel {name} for sm_{sm} (cache key {key[:16]}) is not in the cache and "
                                   f"cuda-tile is not installed here")
    os.makedirs(cache_dir, exist_ok=True)
    try:
        symbol, cubin = _compile(name, source, key, operands, sm, cache_dir)
    except Exception as exc:  # cuTile's own errors carry the compiler output
        detail = " ".join(str(exc).split())[:600]
        raise KernelExportError(f"{type(exc).__name__}: {detail}") from None
    block = block_threads(cubin, symbol)
    _write_atomic(cubin_path, cubin)
    _write_atomic(meta_path, json.dumps({"symbol": symbol, "block_threads": block, "template": name, "sm": sm,
                                         "toolchain": dict(installed)}).encode())
    return ExportedKernel(symbol, block, cubin, installed)


def _read_entry(cubin_path, meta_path):
    """The cached kernel at these paths, or None (absent, or written by an older cgc)."""
    if not (os.path.exists(cubin_path) and os.path.exists(meta_path)):
        return None
    try:
        with open(meta_path, encoding="utf-8") as handle:
            meta = json.load(handle)
        with open(cubin_path, "rb") as handle:
            cubin = handle.read()
        return ExportedKernel(meta["symbol"], meta["block_threads"], cubin, _toolchain_tuple(meta["toolchain"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _compile(template, source, key, operands, sm, cache_dir):
    import cuda.tile as ct
    from cuda.tile.compilation import ArrayConstraint, CallingConvention, KernelSignature, export_kernel
    source_dir = os.path.join(cache_dir, "src")
    os.makedirs(source_dir, exist_ok=True)
    source_path = os.path.join(source_dir, f"{template}_{key[:16]}.py")
    _write_atomic(source_path, source.encode())
    spec = importlib.util.spec_from_file_location(f"cgc_kernel_{key[:16]}", source_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dtypes = {"float32": ct.float32, "float16": ct.float16, "bfloat16": ct.bfloat16, "int32": ct.int32,
              "int8": ct.int8, "uint8": ct.uint8, "float8_e4m3": ct.float8_e4m3fn}
    parameters = []
    for operand in operands:
        dtype, ndim = operand[0], operand[1]
        facts = {}
        if len(operand) > 2:
            base, strides = operand[2], list(operand[3])
            facts = {"base_addr_divisible_by": base, "stride_constant": [None] * (ndim - 1) + [1],
                     "stride_divisible_by": strides + [1]}
        parameters.append(ArrayConstraint(dtypes[dtype], ndim, index_dtype=ct.int32, stride_lower_bound_incl=0,
                                          alias_groups=(), may_alias_internally=False, **facts))
    signature = KernelSignature(parameters, CallingConvention.cutile_python_v1()).with_mangled_symbol(template)
    with tempfile.NamedTemporaryFile(suffix=".cubin", dir=cache_dir, delete=False) as handle:
        temp_path = handle.name
    try:
        export_kernel(module.kernel, [signature], temp_path, gpu_code=f"sm_{sm}", output_format="cubin")
        with open(temp_path, "rb") as handle:
            return signature.symbol, handle.read()
    finally:
        os.unlink(temp_path)


def _write_atomic(path, data):
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)


def elf_sections(image):
    """{section name: bytes} of an ELF64 little-endian image."""
    if image[:4] != b"\x7fELF" or image[4] != 2:
        raise KernelExportError("not an ELF64 cubin")
    (section_offset,) = struct.unpack_from("<Q", image, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", image, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", image, section_offset + i * entry_size) for i in range(count)]
    names_offset = headers[names_index][4]

    def name_at(offset):
        end = image.index(b"\0", names_offset + offset)
        return image[names_offset + offset:end].decode()

    return {name_at(h[0]): image[h[4]:h[4] + h[5]] for h in headers}


def block_threads(image, symbol):
    """Threads per block the cubin's kernel `symbol` requires (EIATTR_REQNTID x*y*z)."""
    info = elf_sections(image).get(f".nv.info.{symbol}")
    if info is None:
        raise KernelExportError(f"cubin has no .nv.info.{symbol} section")
    position = 0
    while position + 4 <= len(info):
        fmt, attribute = info[position], info[position + 1]
        if fmt == _EIFMT_SVAL:
            (size,) = struct.unpack_from("<H", info, position + 2)
            value = info[position + 4:position + 4 + size]
            position += 4 + size
            if attribute == EIATTR_REQNTID:
                x, y, z = struct.unpack_from("<III", value)
                return x * y * z
        else:
            position += 4
    raise KernelExportError(f"cubin of {symbol} has no EIATTR_REQNTID attribute")


def parameter_sizes(image, symbol):
    """Byte sizes of the kernel's parameters in order (EIATTR_KPARAM_INFO), to check the calling
    convention: an array of ndim dims is 8 (pointer), then 4 per shape dim, then 4 per stride."""
    info = elf_sections(image).get(f".nv.info.{symbol}")
    if info is None:
        raise KernelExportError(f"cubin has no .nv.info.{symbol} section")
    found, position = {}, 0
    while position + 4 <= len(info):
        fmt, attribute = info[position], info[position + 1]
        if fmt == _EIFMT_SVAL:
            (size,) = struct.unpack_from("<H", info, position + 2)
            if attribute in (EIATTR_KPARAM_INFO, EIATTR_KPARAM_INFO_V2):
                _, ordinal, _, flags = struct.unpack_from("<IHHI", info, position + 4)
                # the two layouts keep the size in different bits (read off tileiras 13.4 cubins)
                found[ordinal] = (flags >> 18) & 0x3FFF if attribute == EIATTR_KPARAM_INFO else flags & 0xFFFF
            position += 4 + size
        else:
            position += 4
    return [found[ordinal] for ordinal in sorted(found)]


def symbols(image):
    """Names in the cubin's symbol table (to check an entry point exists)."""
    sections = elf_sections(image)
    table, strings = sections.get(".symtab", b""), sections.get(".strtab", b"")
    names = []
    for offset in range(0, len(table), 24):
        (name_offset,) = struct.unpack_from("<I", table, offset)
        end = strings.index(b"\0", name_offset)
        names.append(strings[name_offset:end].decode())
    return names

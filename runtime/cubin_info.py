"""What a cubin's kernel uses, read from its ELF image without CUDA tools: registers per thread,
local memory per thread (the frame: register spills), static shared memory, and the instruction
mix of the PTX that tileiras embeds. `cgc inspect` shows them; a kernel that spills or converts
more than it multiplies is visible before it reaches a GPU.

Images come from plans cgc did not write: every offset is bounds-checked and a malformed image
gives None, never an exception.
"""

import re
import struct
from collections import Counter

_SECTION = struct.Struct("<IIQQQQIIQQ")  # ELF64 section header
_EIFMT_BVAL, _EIFMT_HVAL, _EIFMT_SVAL = 2, 3, 4  # .nv.info attribute formats
_EIATTR_FRAME_SIZE, _EIATTR_REGCOUNT = 0x11, 0x2F
_PTX_OP = re.compile(r"\s*(?:@!?%p\d+\s+)?([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)?)[\s.;]")


def _sections(image):
    """({name: bytes}, {name: size}) of an ELF64 little-endian image's sections (a NOBITS section,
    such as .nv.shared.*, has a size and no bytes); raises ValueError when malformed."""
    if len(image) < 64 or image[:4] != b"\x7fELF" or image[4] != 2 or image[5] != 1:
        raise ValueError("not an ELF64 little-endian image")
    shoff, = struct.unpack_from("<Q", image, 0x28)
    entsize, count, names_index = struct.unpack_from("<HHH", image, 0x3A)
    if entsize != _SECTION.size or count > 4096 or names_index >= count or shoff + count * entsize > len(image):
        raise ValueError("section table out of bounds")
    headers = [_SECTION.unpack_from(image, shoff + i * entsize) for i in range(count)]

    def body(header):
        _, kind, _, _, offset, size, *_ = header
        if kind == 8:  # SHT_NOBITS (.nv.shared.*): a size, no bytes in the file
            return b""
        if offset + size > len(image):
            raise ValueError("section out of bounds")
        return image[offset:offset + size]

    names = body(headers[names_index])
    sections, sizes = {}, {}
    for header in headers:
        start = header[0]
        end = names.find(b"\0", start)
        if start >= len(names) or end < 0:
            raise ValueError("section name out of bounds")
        name = names[start:end].decode("ascii", "replace")
        sections[name], sizes[name] = body(header), header[5]
    return sections, sizes


def _attributes(blob):
    """(attribute, value) of each 8-byte SVAL entry (symbol index, value) of a .nv.info section."""
    found, i = [], 0
    while i + 2 <= len(blob):
        kind, attribute = blob[i], blob[i + 1]
        i += 2
        if kind == _EIFMT_SVAL:
            if i + 2 > len(blob):
                break
            size, = struct.unpack_from("<H", blob, i)
            i += 2
            if size == 8 and i + 8 <= len(blob):
                found.append((attribute, struct.unpack_from("<I", blob, i + 4)[0]))
            i += size
        elif kind == _EIFMT_HVAL:
            i += 2
        elif kind == _EIFMT_BVAL:
            i += 1
    return found


def resources(image):
    """{registers, local_bytes, shared_bytes} of the image's kernel, or None if it cannot be read."""
    try:
        sections, sizes = _sections(bytes(image))
        attributes = _attributes(sections.get(".nv.info", b""))
    except (ValueError, struct.error):
        return None
    registers = max((v for a, v in attributes if a == _EIATTR_REGCOUNT), default=None)
    frame = max((v for a, v in attributes if a == _EIATTR_FRAME_SIZE), default=0)
    shared = sum(size for name, size in sizes.items() if name.startswith(".nv.shared."))
    return None if registers is None else {"registers": registers, "local_bytes": frame, "shared_bytes": shared}


def ptx(image):
    """The PTX text tileiras embedded in the image (.nv_debug_ptx_txt), or None."""
    try:
        sections, _ = _sections(bytes(image))
    except (ValueError, struct.error):
        return None
    text = sections.get(".nv_debug_ptx_txt")
    return None if text is None else text.decode("utf-8", "replace").replace("\0", "\n")


def instruction_mix(ptx_text):
    """Counter of PTX instructions (opcode plus its first modifier: ld.global, cvt.rn, fma.rn)."""
    mix = Counter()
    for line in ptx_text.splitlines():
        match = _PTX_OP.match(line)
        if match and not line.lstrip().startswith((".", "//")):
            mix[match.group(1)] += 1
    return mix

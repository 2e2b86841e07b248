"""Dump CPython line tables together with the lines CPython itself derives from them.

Run by LineTableTests.swift under every supported interpreter (2.7, 3.6+; in 2.7 syntax). Prints
one JSON object on stdout:

    {"version": "3.11.7",
     "code_objects": [{"qualname": ..., "first_line": int, "table": hex, "code_length": int,
                       "instruction_count": int, "line_before_start": int,
                       "lines": [int or null, one per 2-byte code unit of the bytecode]}]}

`table` is `co_lnotab` up to 3.9 and `co_linetable` on 3.10+. `lines[i]` is what
`PyCode_Addr2Line(code, unit_size * i)` returns (null for -1), called through ctypes so the
expectation is CPython's own C implementation, not a re-implementation. Every code unit is
covered, not only instruction starts, because a profiled frame can point at an
EXTENDED_ARG or (3.11+) an inline CACHE entry; co_code has the same layout as
co_code_adaptive, so these offsets are also offsets into co_code_adaptive.

As a guard against misusing ctypes, each instruction's line is also derived from the
Python-level API (lnotab via dis.findlinestarts on 3.8/3.9, co_lines() on 3.10+,
co_positions() on 3.11+); any disagreement aborts with exit status 1.
"""

import ast
import binascii
import ctypes
import dis
import importlib
import json
import sys
import types

VERSION = sys.version_info[:2]
# Bytes per code unit: 3.6+ runs 2-byte wordcode; 2.7's instructions are 1 or 3 bytes, and f_lasti may
# be any byte offset.
UNIT = 2 if VERSION >= (3, 6) else 1

_addr2line = ctypes.pythonapi.PyCode_Addr2Line
_addr2line.argtypes = [ctypes.py_object, ctypes.c_int]
_addr2line.restype = ctypes.c_int


def addr2line(code, byte_offset):
    line = _addr2line(code, byte_offset)
    return None if line == -1 else line


def _long_function_source():
    # Forces every "large delta" encoding: a line gap > 127 (lnotab/3.10 emit several
    # (0, 127) pairs; 3.11+ needs a multi-byte varint), a single line compiling to far
    # more than 255 bytes (several (255, 0) / (254, 0) pairs), a call whose closing
    # CALL jumps back more than 127 lines (negative deltas), and columns > 127
    # (3.11+ long form).
    lines = ["def very_long_function(a, b):", "    total = a"]
    lines += ["    # filler line %d" % i for i in range(300)]
    lines.append("    big = [" + ", ".join("a + %d" % i for i in range(200)) + "]")
    lines.append("    total = max(")
    lines += ["        a + b * %d," % i for i in range(150)]
    lines.append("    )")
    lines.append(" " * 4 + "x = " + " " * 140 + "(a if a else b)")
    for i in range(200):
        lines.append("    total += a * %d" % i)
        lines.append("")
    lines.append("    return total, big, x")
    return "\n".join(lines) + "\n"


VARIED_SOURCE = '''
import functools


def decorator(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


@decorator
def loops(n):
    total = 0
    for i in range(n):
        if i % 3 == 0:
            continue
        elif i > 100:
            break
        total += i
    else:
        total -= 1
    while total > 10:
        total //= 2
    return total


def multi_line_expression(a, b):
    value = (
        a
        + b
        * (a
           - b)
    )
    return {
        "a": a,
        "b": [b,
              value],
    }


def comprehensions(items):
    squares = [x * x for x in items if x]
    pairs = {x: [y
                 for y in range(x)]
             for x in items}
    total = sum(x for x in items)
    unique = {x % 3 for x in items}
    return squares, pairs, total, unique


def exceptions(path):
    try:
        handle = open(path)
    except FileNotFoundError as error:
        return str(error)
    except (OSError, ValueError):
        raise
    else:
        handle.close()
    finally:
        print("done")
    try:
        pass
    finally:
        return None


def with_statements(lock, other):
    with lock:
        pass
    with lock as a, other as b:
        return a, b


def nested(x):
    def inner(y):
        def innermost(z):
            return x + y + z
        return innermost
    return inner(x)(x)


square = lambda v: v * v
adders = [lambda v, i=i: v + i for i in range(3)]


class Thing:
    attribute = 1

    def method(self):
        return self.attribute

    @property
    def prop(self):
        return [
            self.attribute,
        ]

    @staticmethod
    def static(a, *args, **kwargs):
        return a, args, kwargs


def generator(n):
    yield 1
    yield from range(n)


async def coroutine(things):
    async with things as t:
        async for item in t:
            await item


def conditionals(a, b):
    assert a, "message"
    return (a if a < b < 10 else b), not a, a and b or None



def after_blank_lines(values):
    global square
    del values[0]
    return f"{values!r:>{len(values)}} and {square(2)}"
'''

# 2.7 compiles none of the above (yield from, async, f-strings): the same shapes in its syntax.
VARIED_SOURCE_27 = '''
import functools


def decorator(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


@decorator
def loops(n):
    total = 0
    for i in range(n):
        if i % 3 == 0:
            continue
        elif i > 100:
            break
        total += i
    else:
        total -= 1
    while total > 10:
        total //= 2
    return total


def multi_line_expression(a, b):
    value = (
        a
        + b
        * (a
           - b)
    )
    return {
        "a": a,
        "b": [b,
              value],
    }


def comprehensions(items):
    squares = [x * x for x in items if x]
    pairs = {x: [y
                 for y in range(x)]
             for x in items}
    total = sum(x for x in items)
    unique = {x % 3 for x in items}
    return squares, pairs, total, unique


def exceptions(path):
    try:
        handle = open(path)
    except IOError as error:
        return str(error)
    except (OSError, ValueError):
        raise
    else:
        handle.close()
    finally:
        print("done")


def with_statements(lock, other):
    with lock:
        pass
    with lock as a, other as b:
        return a, b


def nested(x):
    def inner(y):
        def innermost(z):
            return x + y + z
        return innermost
    return inner(x)(x)


square = lambda v: v * v
adders = [lambda v, i=i: v + i for i in range(3)]


class Thing(object):
    attribute = 1

    def method(self):
        return self.attribute

    @property
    def prop(self):
        return [
            self.attribute,
        ]


def generator(n):
    yield 1
    for value in range(n):
        yield value


def conditionals(a, b):
    assert a, "message"
    return (a if a < b < 10 else b), not a, a and b or None



def after_blank_lines(values):
    global square
    del values[0]
    return "%r and %s" % (values, square(2))
'''

# Syntax that only newer versions compile; each one adds its own table shapes.
VERSION_SPECIFIC_SOURCES = {
    (3, 10): '''
def matching(command):
    match command:
        case [x, y, *rest] if x > y:
            return rest
        case {"key": value}:
            return value
        case str() | bytes():
            return command
        case _:
            return None
''',
    (3, 11): '''
def exception_groups():
    caught = []
    try:
        raise ExceptionGroup("eg", [ValueError(1)])
    except* ValueError as group:
        caught.append(group)
    except* TypeError:
        pass
    return caught
''',
    (3, 12): '''
def generic[T](items: list[T]) -> T:
    type Alias = list[T]
    return items[0]
''',
}


def source_without_columns():
    # An AST whose nodes have no column information: 3.11+ encodes its locations with
    # the "no column info" entry form, which source text never produces.
    tree = ast.parse(
        "def f(a):\n    x = a + 1\n    return [y for y in x if y]\n"
    )
    for node in ast.walk(tree):
        if hasattr(node, "col_offset"):
            node.col_offset = -1
            node.end_col_offset = -1
    return tree


def module_code(name):
    # Compiled from source rather than taken from the imported module so that the code
    # objects are exactly the ones this interpreter's compiler produces.
    module = importlib.import_module(name)
    path = module.__file__
    if path.endswith((".pyc", ".pyo")):  # 2.7 names the compiled file
        path = path[:-1]
    with open(path, "rb") as source:
        return compile(source.read(), path, "exec", dont_inherit=True)


def top_level_code_objects():
    yield compile(VARIED_SOURCE if VERSION >= (3, 6) else VARIED_SOURCE_27, "<varied>", "exec", dont_inherit=True)
    yield compile(_long_function_source(), "<long>", "exec", dont_inherit=True)
    for minimum, source in sorted(VERSION_SPECIFIC_SOURCES.items()):
        if VERSION >= minimum:
            yield compile(source, "<%d.%d>" % minimum, "exec", dont_inherit=True)
    yield compile(source_without_columns(), "<no-columns>", "exec", dont_inherit=True)
    for name in ("json.decoder", "argparse", "dis"):
        yield module_code(name)


def all_code_objects(code):
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            for inner in all_code_objects(constant):
                yield inner


def instruction_offsets(code):
    if hasattr(dis, "get_instructions"):
        return [instruction.offset for instruction in dis.get_instructions(code)]
    # 2.7: an opcode byte, then two argument bytes when it takes an argument.
    offsets, offset, raw = [], 0, bytearray(code.co_code)
    while offset < len(raw):
        offsets.append(offset)
        offset += 3 if raw[offset] >= dis.HAVE_ARGUMENT else 1
    return offsets


def python_level_lines(code):
    """Line of each instruction start according to the Python-level API."""
    offsets = instruction_offsets(code)
    if VERSION < (3, 10):
        # lnotab semantics: the line of the last line start at or before the offset.
        starts = list(dis.findlinestarts(code))
        lines = {}
        for offset in offsets:
            line = code.co_firstlineno
            for start, start_line in starts:
                if start <= offset:
                    line = start_line
            lines[offset] = line
        return lines
    lines = {}
    for start, end, line in code.co_lines():
        for offset in offsets:
            if start <= offset < end:
                lines[offset] = line
    if VERSION >= (3, 11):
        positions = list(code.co_positions())
        for offset in offsets:
            position_line = positions[offset // 2][0]
            if position_line != lines.get(offset):
                fail(code, offset, "co_lines", lines.get(offset), "co_positions", position_line)
    return lines


def fail(code, offset, source_a, line_a, source_b, line_b):
    sys.stderr.write(
        "%s line mismatch in %s (%s:%d) at byte offset %d: %s says %r, %s says %r\n"
        % (sys.version.split()[0], code.co_name, code.co_filename, code.co_firstlineno,
           offset, source_a, line_a, source_b, line_b)
    )
    sys.exit(1)


def describe(code):
    table = code.co_lnotab if VERSION < (3, 10) else code.co_linetable
    code_length = len(code.co_code)
    lines = [addr2line(code, offset) for offset in range(0, code_length, UNIT)]
    python_lines = python_level_lines(code)
    for offset, line in python_lines.items():
        if line != lines[offset // UNIT]:
            fail(code, offset, "the Python-level API", line, "PyCode_Addr2Line", lines[offset // UNIT])
    return {
        "qualname": "%s:%s" % (code.co_filename, getattr(code, "co_qualname", code.co_name)),
        "first_line": code.co_firstlineno,
        "table": binascii.hexlify(table).decode("ascii"),
        "unit_size": UNIT,
        "code_length": code_length,
        "instruction_count": len(python_lines),
        # CPython answers co_firstlineno for any negative offset (a frame that has not
        # started yet reports instruction -1).
        "line_before_start": addr2line(code, -2),
        "lines": lines,
    }


def main():
    code_objects = [
        describe(code)
        for top_level in top_level_code_objects()
        for code in all_code_objects(top_level)
    ]
    json.dump({"version": sys.version.split()[0], "code_objects": code_objects}, sys.stdout)


if __name__ == "__main__":
    main()

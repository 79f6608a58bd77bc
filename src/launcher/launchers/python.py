# hearth's Python launcher: the action-loop protocol inside a container.
#
# One JSON line in on stdin, one JSON line out on fd 3. The first message is an init
# ({"op": "init", "action", "entry_point", "binary"}), answered {"ok": true} or {"error": msg};
# every later one is a run ({"op": "run", "value", "env"}), answered with what main returned.
# After every reply's work and BEFORE the reply, a sentinel line goes to stdout and to stderr
# so that the host knows the activation's log lines are complete when it reads the reply.
#
# Start-up cost is paid by every cold start, so the launcher imports only what a run needs:
# the interpreter runs with -S (no site: its .pth processing was most of Python's own start),
# the site-packages directories are put on sys.path here without running .pth files; JSON goes
# through the C accelerator `_json` directly (the `json` package pulls in `re` and `enum`,
# ~5 ms), with `json` itself as the fallback when `_json`'s private interface does not match
# this Python; the action is loaded with compile + exec (no importlib.util); `traceback` is
# imported only when an exception is printed.
import os
import sys


def add_site_dirs():
    # What -S skipped, minus the .pth files: actions still import from site-packages.
    if not sys.flags.no_site:
        return
    try:
        import site

        for d in site.getsitepackages():
            if d not in sys.path and os.path.isdir(d):
                sys.path.append(d)
    except Exception:
        pass


def json_codec():
    # Returns (loads, dumps) over bytes/str; the fast pair is checked against known answers
    # before use, so a Python whose `_json` differs falls back to the json package.
    try:
        import _json

        class Ctx:
            strict = True
            object_hook = None
            object_pairs_hook = None
            parse_float = float
            parse_int = int

            @staticmethod
            def parse_constant(name):
                return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[
                    name
                ]

        scan = _json.make_scanner(Ctx)
        space = " \t\n\r"

        def loads(data):
            s = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
            n = len(s)
            i = 0
            while i < n and s[i] in space:
                i += 1
            try:
                obj, end = scan(s, i)
            except StopIteration as e:
                raise ValueError("Expecting value: char %d" % e.value) from None
            while end < n and s[end] in space:
                end += 1
            if end != n:
                raise ValueError("Extra data: char %d" % end)
            return obj

        def default(o):
            raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)

        make, quote = _json.make_encoder, _json.encode_basestring

        def dumps(value):
            if isinstance(value, str):
                return quote(value)
            # A fresh encoder per call, as json's one-shot path does: its circular-reference
            # markers must not outlive a failed encode.
            return "".join(make({}, default, quote, None, ":", ",", False, False, True)(value, 0))

        probe = {"a": [1, 2.5, "\u00e9", None, True], "b": {"c": "x\"y"}}
        text = '{"a":[1,2.5,"\u00e9",null,true],"b":{"c":"x\\"y"}}'
        if dumps(probe) != text or loads(text.encode("utf-8")) != probe:
            raise ValueError("unexpected _json behaviour")
        return loads, dumps
    except Exception:
        import json

        def dumps(value):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

        return json.loads, dumps


add_site_dirs()
JSON_LOADS, JSON_DUMPS = json_codec()

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"
CODE_DIR = "/action"


def protocol_files():
    # The protocol fds move out of the action's reach: reading stdin or writing fd 3 from the
    # action must not be able to corrupt the conversation with the host.
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(3), "wb")
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.close(3)
    return proto_in, proto_out


def end_of_activation(proto_out, reply):
    sys.stdout.write(SENTINEL)
    sys.stdout.flush()
    sys.stderr.write(SENTINEL)
    sys.stderr.flush()
    proto_out.write(reply)
    proto_out.write(b"\n")
    proto_out.flush()


def encode(value):
    try:
        return JSON_DUMPS(value).encode("utf-8")
    except (TypeError, ValueError) as e:
        return encode({"error": "The action returned a value that is not JSON: %s" % e})


def activate_virtualenv():
    # OpenWhisk's Python runtime activates a zip's `virtualenv` folder before it loads the
    # action. As there: with the folder's bin/activate_this.py when it has one (the
    # `virtualenv` tool writes it); otherwise (`python3 -m venv`, `pip install --target`) its
    # site-packages go first on sys.path with their .pth files, which is what that script does.
    # The folder stays where it was unpacked, on the read-only code mount: packages (C
    # extensions too) load from there and nothing is written.
    venv = os.path.join(CODE_DIR, "virtualenv")
    if not os.path.isdir(venv):
        return
    script = os.path.join(venv, "bin", "activate_this.py")
    if os.path.isfile(script):
        with open(script, "rb") as f:
            code = compile(f.read(), script, "exec")
        exec(code, {"__file__": script, "__name__": "activate_this"})
        return
    version = "python%d.%d" % sys.version_info[:2]
    dirs = []
    for lib in ("lib", "lib64"):
        base = os.path.join(venv, lib)
        if not os.path.isdir(base):
            continue
        # The running interpreter's own dir first; another 3.x's pure packages may still load.
        names = sorted(os.listdir(base), key=lambda n: n != version)
        for name in names:
            d = os.path.realpath(os.path.join(base, name, "site-packages"))
            if name.startswith("python3") and os.path.isdir(d) and d not in dirs:
                dirs.append(d)
    if not dirs:
        raise RuntimeError(
            "invalid virtualenv: the zip's virtualenv folder has neither bin/activate_this.py "
            "nor lib/%s/site-packages" % version
        )
    import site

    before = list(sys.path)
    for d in dirs:
        site.addsitedir(d)
    sys.path[:] = [p for p in sys.path if p not in before] + before
    os.environ["VIRTUAL_ENV"] = venv
    os.environ["PATH"] = os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", "")


def load(msg):
    entry = msg.get("entry_point") or "main"
    if msg.get("binary"):
        activate_virtualenv()
        if CODE_DIR not in sys.path:
            sys.path.insert(0, CODE_DIR)
    path = os.path.join(CODE_DIR, "__main__.py")
    if not os.path.exists(path):
        raise RuntimeError("the action has no __main__.py")
    with open(path, "rb") as f:
        source = f.read()
    module = type(sys)("__hearth_action__")
    module.__file__ = path
    sys.modules["__hearth_action__"] = module
    exec(compile(source, path, "exec"), module.__dict__)
    fn = getattr(module, entry, None)
    if not callable(fn):
        raise RuntimeError("the action has no function %r" % entry)
    return fn


def print_exception():
    import traceback

    traceback.print_exc()


def main():
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    proto_in, proto_out = protocol_files()
    fn = None
    set_env = set()
    for line in proto_in:
        try:
            msg = JSON_LOADS(line)
        except ValueError as e:
            end_of_activation(proto_out, encode({"error": "bad message: %s" % e}))
            continue
        op = msg.get("op")
        if op == "init":
            try:
                fn = load(msg)
                reply = b'{"ok":true}'
            except Exception as e:
                print_exception()
                reply = encode({"error": "%s: %s" % (type(e).__name__, e)})
            end_of_activation(proto_out, reply)
        elif op == "run":
            env = msg.get("env") or {}
            fresh = set()
            for k, v in env.items():
                name = "__OW_" + k
                os.environ[name] = str(v)
                fresh.add(name)
            for name in set_env - fresh:
                os.environ.pop(name, None)
            set_env = fresh
            if fn is None:
                reply = encode({"error": "the action was not initialized"})
            else:
                try:
                    reply = encode(fn(msg.get("value") or {}))
                except Exception as e:
                    print_exception()
                    reply = encode({"error": "%s: %s" % (type(e).__name__, e)})
            end_of_activation(proto_out, reply)
        else:
            end_of_activation(proto_out, encode({"error": "unknown op %r" % op}))


main()

# hearth's Python launcher: the action-loop protocol inside a container.
#
# One JSON line in on stdin, one JSON line out on fd 3. The first message is an init
# ({"op": "init", "action", "entry_point", "binary"}), answered {"ok": true} or {"error": msg};
# every later one is a run ({"op": "run", "value", "env"}), answered with what main returned.
# After every reply's work and BEFORE the reply, a sentinel line goes to stdout and to stderr
# so that the host knows the activation's log lines are complete when it reads the reply.
import importlib.util
import json
import os
import sys
import traceback

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
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as e:
        return encode({"error": "The action returned a value that is not JSON: %s" % e})


def load(msg):
    entry = msg.get("entry_point") or "main"
    if msg.get("binary"):
        if CODE_DIR not in sys.path:
            sys.path.insert(0, CODE_DIR)
    path = os.path.join(CODE_DIR, "__main__.py")
    if not os.path.exists(path):
        raise RuntimeError("the action has no __main__.py")
    spec = importlib.util.spec_from_file_location("__hearth_action__", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["__hearth_action__"] = module
    spec.loader.exec_module(module)
    fn = getattr(module, entry, None)
    if not callable(fn):
        raise RuntimeError("the action has no function %r" % entry)
    return fn


def main():
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    proto_in, proto_out = protocol_files()
    fn = None
    set_env = set()
    for line in proto_in:
        try:
            msg = json.loads(line)
        except ValueError as e:
            end_of_activation(proto_out, encode({"error": "bad message: %s" % e}))
            continue
        op = msg.get("op")
        if op == "init":
            try:
                fn = load(msg)
                reply = b'{"ok":true}'
            except Exception as e:
                traceback.print_exc()
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
                    traceback.print_exc()
                    reply = encode({"error": "%s: %s" % (type(e).__name__, e)})
            end_of_activation(proto_out, reply)
        else:
            end_of_activation(proto_out, encode({"error": "unknown op %r" % op}))


main()

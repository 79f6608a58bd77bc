# hearth's native launcher: OpenWhisk's dockerskeleton contract over the action-loop protocol.
#
# The action is an executable at /action/exec (a script or a binary, from a zip or sent as
# text). Every run spawns it afresh, as OpenWhisk's action proxy (actionproxy.py) does: the
# parameters as a JSON string in argv[1] (left out past MAX_ARG_STRLEN) and on stdin; its
# stderr goes straight to the activation's logs; of its stdout, every line but the last is
# logged and the last line is the result, which must be a JSON object.
#
# Protocol as the Python launcher's: one JSON line in on stdin, one line out on fd 3, the
# sentinels on stdout and stderr before each reply. A reply starting with "!" is a developer
# error in the action proxy's words (launcher/protocol.rs), e.g. "!\"The action did not return
# a dictionary or array.\"". The exit status does not decide the outcome (it does not in
# OpenWhisk either); a non-zero one is logged.
#
# Imports are C modules plus json (the result must be validated, and the parameters encoded
# as the action proxy encodes them); the exec is started with posix_spawn, without the
# subprocess module's start-up cost.
import json
import os
import select
import signal
import sys

SENTINEL = b"XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"
CODE_DIR = "/action"
EXEC = CODE_DIR + "/exec"
# linux/binfmts.h: the longest single argument execve takes. Longer parameters come on stdin
# only, as in the action proxy.
MAX_ARG_STRLEN = 131071
CHUNK = 65536

NO_BINARY = "The action failed to generate or locate a binary. See logs for details."
NOT_A_DICT = "The action did not return a dictionary or array."


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def protocol_files():
    # As in the Python launcher: the protocol fds move out of the exec's reach.
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.dup(3)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.close(3)
    return proto_in, proto_out


def end_of_activation(proto_out, reply):
    write_all(1, SENTINEL)
    write_all(2, SENTINEL)
    write_all(proto_out, reply + b"\n")


def developer_error(message):
    return b"!" + json.dumps(message).encode("utf-8")


def log(text):
    write_all(2, (text + "\n").encode("utf-8", "replace"))


def init():
    if os.path.isfile(EXEC) and os.access(EXEC, os.X_OK):
        return b'{"ok":true}'
    if os.path.lexists(EXEC):
        log("/action/exec is not an executable file")
    else:
        log("the action has no file named exec at the top of its zip")
    return developer_error(NO_BINARY)


def spawn(argv, stdin_r, out_w):
    # SIGPIPE is ignored by Python and would stay ignored in the child: restore the default,
    # as subprocess does.
    return os.posix_spawn(
        EXEC,
        argv,
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin_r, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
        ],
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
    )


def relay(pid, stdin_w, out_r, data):
    # Feeds `data` to the exec's stdin while logging its stdout line by line; returns the
    # last line (the result) and the exit status. Poll rather than two blocking steps: an
    # exec that writes much before reading its stdin must not deadlock with the launcher.
    poller = select.poll()
    poller.register(out_r, select.POLLIN)
    pending = memoryview(data)
    if pending:
        os.set_blocking(stdin_w, False)
        poller.register(stdin_w, select.POLLOUT)
    else:
        os.close(stdin_w)
        stdin_w = -1
    held = bytearray()
    while out_r >= 0:
        for fd, _ in poller.poll():
            if fd == stdin_w:
                try:
                    pending = pending[os.write(stdin_w, pending[:CHUNK]):]
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    pending = pending[:0]
                if not pending:
                    poller.unregister(stdin_w)
                    os.close(stdin_w)
                    stdin_w = -1
            elif fd == out_r:
                chunk = os.read(out_r, CHUNK)
                if not chunk:
                    poller.unregister(out_r)
                    os.close(out_r)
                    out_r = -1
                    break
                held += chunk
                # Everything up to the last newline that is not the final byte is log.
                cut = held.rfind(b"\n", 0, len(held) - 1)
                if cut >= 0:
                    write_all(1, held[: cut + 1])
                    del held[: cut + 1]
    if stdin_w >= 0:
        os.close(stdin_w)
    _, status = os.waitpid(pid, 0)
    return bytes(held).strip(), status


def run(msg):
    text = json.dumps(msg.get("value") or {})
    argv = [EXEC, text] if len(text) <= MAX_ARG_STRLEN else [EXEC]
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = spawn(argv, stdin_r, out_w)
    except OSError as e:
        os.close(stdin_w)
        os.close(out_r)
        # The action proxy logs the reason on stdout and answers its usual error.
        write_all(1, ("%s\n" % e).encode("utf-8", "replace"))
        return developer_error(NOT_A_DICT)
    finally:
        os.close(stdin_r)
        os.close(out_w)
    last, status = relay(pid, stdin_w, out_r, text.encode("utf-8"))
    code = os.waitstatus_to_exitcode(status)
    if code > 0:
        log("exec exited with status %d" % code)
    elif code < 0:
        log("exec was killed by signal %d" % -code)
    try:
        value = json.loads(last.decode("utf-8"))
        if isinstance(value, (dict, list)):
            # Arrays are let through for the host to refuse: hearth's results are objects.
            result = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            return result.encode("utf-8")
    except ValueError:
        pass
    # As the action proxy does: the unusable last line goes to the logs.
    write_all(1, last + b"\n")
    return developer_error(NOT_A_DICT)


def main():
    proto_in, proto_out = protocol_files()
    # The action proxy runs the exec from the action's directory.
    os.chdir(CODE_DIR)
    ready = False
    set_env = set()
    for line in proto_in:
        try:
            msg = json.loads(line)
        except ValueError as e:
            end_of_activation(proto_out, json.dumps({"error": "bad message: %s" % e}).encode())
            continue
        op = msg.get("op")
        if op == "init":
            reply = init()
            ready = reply.startswith(b"{")
        elif op == "run":
            fresh = set()
            for k, v in (msg.get("env") or {}).items():
                name = "__OW_" + k
                os.environ[name] = str(v)
                fresh.add(name)
            for name in set_env - fresh:
                os.environ.pop(name, None)
            set_env = fresh
            reply = run(msg) if ready else developer_error(NO_BINARY)
        else:
            reply = json.dumps({"error": "unknown op %r" % op}).encode()
        end_of_activation(proto_out, reply)


main()

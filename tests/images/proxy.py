"""The action proxy of the test image: OpenWhisk's runtime contract, spoken on port 8080.

Every OpenWhisk runtime image (openwhisk-runtime-go's actionloop proxy, the older Flask
actionproxy of openwhisk-runtime-docker) answers the same two requests, and hearth drives an
image through them alone:

  POST /init  {"value": {"name", "main", "code", "binary", "env"}}
              loads the action once: 200 {"ok": true}; a second init is refused with 403
  POST /run   {"value": params, "activation_id", "action_name", "namespace", "deadline",
               "api_key", ...}
              runs it: 200 with the result (a JSON object), or 502 {"error": ...}

and after each run writes the sentinel line XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX on stdout
and on stderr, so the invoker knows an activation's logs are complete. The run's other fields
become __OW_* environment variables, as in OpenWhisk.

This file is the test image's entrypoint (tests/images/build.sh); it is not part of hearth.
"""

import base64
import http.server
import io
import json
import os
import sys
import traceback
import zipfile

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
ACTION_DIR = "/action"

state = {"main": None}


def load(value):
    """Loads the action from an init's value; returns the callable or raises."""
    code = value.get("code") or ""
    main = value.get("main") or "main"
    for key, val in (value.get("env") or {}).items():
        os.environ[key] = str(val)
    scope = {"__name__": "__main__"}
    if value.get("binary"):
        folder = os.path.join(ACTION_DIR, "src")
        os.makedirs(folder, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(code))) as archive:
            archive.extractall(folder)
        sys.path.insert(0, folder)
        with open(os.path.join(folder, "__main__.py")) as f:
            code = f.read()
    exec(compile(code, "__main__.py", "exec"), scope)
    if not callable(scope.get(main)):
        raise ValueError("the action has no function %r" % main)
    return scope[main]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The reply goes out as two writes (headers, body): with Nagle's algorithm the body waits
    # for the client's delayed ACK of the headers, 40 ms on Linux, on every kept connection.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass  # the action's stdout and stderr are its logs; the proxy keeps out of them

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_POST(self):
        try:
            message = self.body()
        except ValueError:
            return self.reply(400, {"error": "The request body is not JSON."})
        if self.path == "/init":
            return self.init(message)
        if self.path == "/run":
            return self.run(message)
        return self.reply(404, {"error": "no such route"})

    def init(self, message):
        if state["main"] is not None:
            return self.reply(403, {"error": "Cannot initialize the action more than once."})
        try:
            state["main"] = load(message.get("value") or {})
        except Exception as e:
            traceback.print_exc()
            sys.stderr.flush()
            return self.reply(502, {"error": "The action failed to initialize: %s" % e})
        return self.reply(200, {"ok": True})

    def run(self, message):
        if state["main"] is None:
            return self.reply(403, {"error": "The action was not initialized."})
        for key, val in message.items():
            if key != "value":
                os.environ["__OW_" + key.upper()] = str(val)
        try:
            result = state["main"](message.get("value") or {})
            if isinstance(result, dict):
                status, body = 200, result
            else:
                status, body = 502, {"error": "The action did not return a dictionary."}
        except Exception as e:
            traceback.print_exc()
            status, body = 502, {"error": "An error has occurred: %s" % e}
        for stream in (sys.stdout, sys.stderr):
            print(SENTINEL, file=stream)
            stream.flush()
        return self.reply(status, body)


if __name__ == "__main__":
    os.makedirs(ACTION_DIR, exist_ok=True)
    port = int(os.environ.get("PORT") or 8080)
    http.server.HTTPServer(("0.0.0.0", port), Handler).serve_forever()

#!/usr/bin/env python3
"""A local OAuth 2.0 token endpoint standing in for https://auth.{domain}/oauth2/token
in the GCN authentication tests (Python 3 standard library only).

It serves the client credentials grant at POST /oauth2/token, the way
librdkafka's `sasl.oauthbearer.method=oidc` asks for a token: HTTP basic
authentication with the client id and secret, and the form body
`grant_type=client_credentials` (plus `&scope=...` when one is configured).
Credentials in the form (`client_id`, `client_secret`) are accepted too.

A valid request gets `{"access_token": JWT, "token_type": "bearer",
"expires_in": LIFETIME}`. The JWT is unsigned (`alg` "none"), as Kafka's
default OAUTHBEARER validator (OAuthBearerUnsecuredValidatorCallbackHandler)
expects, with the claims `sub` (the client id), `iat`, `exp`, `jti` and,
when the client asked for one, `scope`. That validator decodes with Java's
plain Base64 decoder, so the token is made of characters that plain Base64 and
Base64URL read alike. Wrong credentials get 401 with
`{"error": "invalid_client", ...}`; another grant type gets 400
`unsupported_grant_type`.

On start it prints the endpoint URL as the first line of stdout; then one JSON
line per request: time, method, path, client_id, how the client authenticated
(`basic` or `form`), grant_type, scope, the status answered and the token's
`exp` when one was issued. stdout is flushed after every line.

usage: token_endpoint.py --client-id ID --client-secret SECRET [--lifetime S] [--port P]
"""

import argparse
import base64
import binascii
import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

TOKEN_PATH = "/oauth2/token"

# Serializes the stdout lines of concurrent requests.
OUTPUT_LOCK = threading.Lock()


def emit(line):
    with OUTPUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsecured_jwt(claims):
    """An unsigned JWS compact serialization, `header.claims.` (empty signature).

    The claims are padded with JSON whitespace until neither part holds `-` or
    `_`, the two characters in which Base64URL and plain Base64 differ.
    """
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}, separators=(",", ":")).encode())
    body = json.dumps(claims, separators=(",", ":"))
    for pad in range(64):
        payload = b64url((body + " " * pad).encode())
        if not set("-_") & set(header + payload):
            return f"{header}.{payload}."
    raise RuntimeError("no padding makes the token plain-Base64 safe")


class TokenHandler(BaseHTTPRequestHandler):
    server_version = "alerthost-test-oidc/1"

    def log_message(self, format, *args):
        # One JSON line per request (see emit) instead of the default access log.
        pass

    def answer(self, status, body, record, extra_headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        record["status"] = status
        emit(json.dumps(record))

    def do_GET(self):
        record = {"time": time.time(), "method": "GET", "path": self.path}
        self.answer(405, {"error": "invalid_request", "error_description": "use POST"}, record)

    def do_POST(self):
        config = self.server.config
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))

        def field(name):
            return (form.get(name) or [None])[0]

        record = {
            "time": time.time(),
            "method": "POST",
            "path": self.path,
            "grant_type": field("grant_type"),
            "scope": field("scope"),
        }
        if self.path != TOKEN_PATH:
            self.answer(404, {"error": "invalid_request", "error_description": "unknown path"}, record)
            return

        client_id, client_secret, auth = None, None, None
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
                client_id, _, client_secret = decoded.partition(":")
                auth = "basic"
            except (binascii.Error, UnicodeDecodeError):
                auth = "malformed basic"
        elif field("client_id") is not None:
            client_id, client_secret, auth = field("client_id"), field("client_secret"), "form"
        record.update(client_id=client_id, auth=auth)

        if client_id != config.client_id or client_secret != config.client_secret:
            self.answer(
                401,
                {"error": "invalid_client", "error_description": "client authentication failed"},
                record,
                [("WWW-Authenticate", 'Basic realm="alerthost-test"')],
            )
            return
        if record["grant_type"] != "client_credentials":
            self.answer(
                400,
                {"error": "unsupported_grant_type", "error_description": "use client_credentials"},
                record,
            )
            return

        now = int(time.time())
        claims = {"sub": client_id, "iat": now, "exp": now + config.lifetime}
        if record["scope"]:
            claims["scope"] = record["scope"]
        claims["jti"] = str(next(self.server.token_ids))
        record["exp"] = claims["exp"]
        self.answer(
            200,
            {
                "access_token": unsecured_jwt(claims),
                "token_type": "bearer",
                "expires_in": config.lifetime,
            },
            record,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--lifetime", type=int, default=3600, help="token lifetime in seconds (default 3600)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    config = parser.parse_args()
    if config.lifetime <= 0:
        parser.error("--lifetime must be positive")

    server = ThreadingHTTPServer(("127.0.0.1", config.port), TokenHandler)
    server.daemon_threads = True
    server.config = config
    server.token_ids = itertools.count(1)
    host, port = server.server_address[:2]
    emit(f"http://{host}:{port}{TOKEN_PATH}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""hostile: a Python guest that tries what a handler must not be able to do,
chosen by the message:

- ``loop``: spin forever (the host's time limit stops it);
- ``alloc``: allocate 1 GiB (the host's memory limit stops it);
- ``passwd``: read /etc/passwd (no file is visible to a guest);
- ``socket``: connect to 127.0.0.1 (no network);
- ``env``: read the environment (empty);
- ``sleep``: ``time.sleep`` for an hour (a wait in the host: the host's time
  limit stops it all the same);
- anything else: save the message, to show the handler still works.

What it found out is forwarded to the sink ``report``, as text starting
with ``denied:`` when the attempt failed and ``allowed:`` when it did not.
"""

import os
import time

import alerthost


def attempt(what, action):
    try:
        result = action()
    except Exception as e:  # every failure is the answer we want
        return alerthost.forward("report", value=f"denied: {what}: {type(e).__name__}: {e}")
    return alerthost.forward("report", value=f"allowed: {what}: {result!r}"[:200])


def read_passwd():
    with open("/etc/passwd") as f:
        return f.read()


def connect():
    import socket

    with socket.create_connection(("127.0.0.1", 9), timeout=1):
        return "connected"


def environment():
    if os.environ:
        return dict(os.environ)
    raise LookupError("no environment variables")


def handle(msg):
    what = msg.value.strip().decode("utf-8", "replace")
    if what == "loop":
        while True:
            pass
    if what == "sleep":
        time.sleep(3600)
        return alerthost.forward("report", value="allowed: sleep: woke up after an hour")
    if what == "alloc":
        hog = bytearray(1 << 30)
        return alerthost.forward("report", value=f"allowed: alloc: {len(hog)} bytes")
    if what == "passwd":
        return attempt("passwd", read_passwd)
    if what == "socket":
        return attempt("socket", connect)
    if what == "env":
        return attempt("env", environment)
    return alerthost.save()

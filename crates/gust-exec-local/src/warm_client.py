# A Python try's client of Gust's warm worker (warm_worker.py), run as
# `python -I -S warm_client.py SOCKET ARGS...` in the try's process group: it hands the worker
# its stdin, stdout and stderr and asks it to fork the try's task runner (given ARGS), then
# waits for that child and exits as it did, so that the try's bash sees one process, as if the
# task runner had started here.
#
# While the worker is starting (importing Airflow; the process named in worker.pid beside the
# socket lives), it waits for it: starting a fresh interpreter too would import Airflow twice
# at once. Without a worker (none starting, or it died), it becomes the task runner itself:
# `python -m airflow.sdk.execution_time.execute_workload ARGS`, a fresh interpreter.
import json
import os
import select
import signal
import socket
import sys
import time

# The longest a try waits for a starting worker before starting an interpreter of its own.
STARTING_WAIT = 120


def cold_start(args):
    python = sys.executable
    os.execv(python, [python, "-m", "airflow.sdk.execution_time.execute_workload", *args])


def connect(path):
    starting = os.path.join(os.path.dirname(path), "worker.pid")
    deadline = time.monotonic() + STARTING_WAIT
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
            return conn
        except OSError:
            conn.close()
        try:
            with open(starting) as f:
                os.kill(int(f.read().strip()), 0)
        except (OSError, ValueError):
            return None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def lines(conn):
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)
        chunk = conn.recv(4096)
        if not chunk:
            return
        buffer += chunk


def end_as(code):
    if code < 0:
        # Killed by a signal: so is this process, as the task runner's own process would be.
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def main():
    path, args = sys.argv[1], sys.argv[2:]
    conn = connect(path)
    if conn is None:
        cold_start(args)
    request = {"argv": args, "cwd": os.getcwd(), "env": dict(os.environ), "pgid": os.getpgrp()}
    try:
        socket.send_fds(conn, [b"{"], [0, 1, 2])
        conn.sendall(json.dumps(request)[1:].encode() + b"\n")
        answers = lines(conn)
        first = next(answers, None)
    except OSError:
        first = None
    if first is None or "pid" not in first:
        # Refused, or the worker died before forking: nothing of the try has started.
        cold_start(args)
    pid = first["pid"]
    try:
        watched = os.pidfd_open(pid)
    except OSError:
        watched = None
    try:
        for answer in answers:
            if "exit" in answer:
                end_as(int(answer["exit"]))
    except OSError:
        pass
    # The worker ended before its child: wait for the child, whose exit code is lost with it.
    if watched is not None:
        select.select([watched], [], [])
    print("gust: the warm worker ended before this try's task runner; its exit code is lost",
          file=sys.stderr)
    os._exit(1)


main()

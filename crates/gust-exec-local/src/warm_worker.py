# Gust's warm worker: imports Airflow's task runner once, then forks one child per Python try,
# as Airflow's LocalExecutor runs tasks from a process that has already imported Airflow.
#
# Run by Gust as `python -c <this> SOCKET`. A try's client (warm_client.py, started by the try's
# bash in the try's process group) connects to SOCKET and sends, with its stdin, stdout and
# stderr as ancillary data, one JSON line: the task runner's arguments, its working folder, its
# environment and its process group. The child joins that group (so the try's kill, timeout and
# crash record reach it exactly as a freshly started interpreter), takes the three descriptors
# as its own, and runs `airflow.sdk.execution_time.execute_workload` as `python -m` would. The
# client is told the child's pid, then its exit code once this process has reaped it.
#
# Ends when its stdin closes (Gust stopped or died); children keep running to their end.
import json
import os
import select
import signal
import socket
import sys
import traceback
import warnings

# The longest request (the environment dominates) a client may send.
MAX_REQUEST = 4 * 1024 * 1024


def warm_up():
    # What every try imports before its task runs: the workload's model, the supervisor, the
    # task runner and its DAG bag, and dag-factory (absent in a venv without it: the try then
    # imports what it needs itself, and fails as it would anyway).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pydantic import TypeAdapter

        from airflow.executors import workloads
        import airflow.executors.base_executor  # noqa: F401
        import airflow.sdk.execution_time.execute_workload  # noqa: F401
        import airflow.sdk.execution_time.supervisor  # noqa: F401
        import airflow.sdk.execution_time.task_runner  # noqa: F401
        import airflow.sdk.log  # noqa: F401

        # Builds (and caches on the models) the validator every try's `main` builds again.
        TypeAdapter(workloads.All)
        for optional in (
            "dagfactory",
            "airflow.dag_processing.dagbag",
            "airflow.providers.standard.operators.python",
            "airflow.providers.standard.operators.bash",
        ):
            try:
                __import__(optional)
            except Exception:
                pass


def read_request(conn):
    # First the descriptors, with one byte; then the JSON line.
    message, fds, _flags, _addr = socket.recv_fds(conn, 1, 3)
    if len(fds) != 3 or message != b"{":
        for fd in fds:
            os.close(fd)
        raise ValueError("a request must start with its three descriptors")
    data = bytearray(message)
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            for fd in fds:
                os.close(fd)
            raise ValueError("the request is too long")
    return json.loads(data), fds


def child(request, fds, keep_closed):
    # The try's process: never returns.
    code = 1
    try:
        for fd in keep_closed:
            try:
                os.close(fd)
            except OSError:
                pass
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        try:
            os.setpgid(0, int(request["pgid"]))
        except OSError as failed:
            # The try's group is gone (it was killed before its task could start), or is in
            # another session than this worker's (a client not started by Gust).
            print(f"gust: cannot join the try's process group: {failed}", file=sys.stderr)
            sys.stderr.flush()
            os._exit(1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # What a fresh interpreter would have on its path from the try's PYTHONPATH.
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[1:1] = [p for p in extra if p not in sys.path]
        sys.argv = ["execute_workload", *request["argv"]]
        from airflow.sdk.execution_time.execute_workload import main

        main()
        code = 0
    except SystemExit as ended:
        if ended.code is None:
            code = 0
        elif isinstance(ended.code, int):
            code = ended.code
        else:
            print(ended.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def send(conn, message):
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        # The client is gone (its try was killed): nothing to tell.
        pass


def serve(path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    control = sys.stdin.fileno()
    # pidfd -> (pid, the client's connection)
    children = {}
    while True:
        readable, _, _ = select.select([listener, control, *children], [], [])
        if control in readable and not os.read(control, 4096):
            return
        for pidfd in [fd for fd in readable if fd in children]:
            pid, conn = children.pop(pidfd)
            os.close(pidfd)
            _, status = os.waitpid(pid, 0)
            send(conn, {"exit": os.waitstatus_to_exitcode(status)})
            conn.close()
        if listener in readable:
            conn, _ = listener.accept()
            conn.settimeout(10)
            try:
                request, fds = read_request(conn)
            except Exception as failed:
                send(conn, {"error": str(failed)})
                conn.close()
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            keep_closed = [listener.fileno(), control, conn.fileno()]
            for pidfd, (_pid, other) in children.items():
                keep_closed += [pidfd, other.fileno()]
            pid = os.fork()
            if pid == 0:
                child(request, fds, keep_closed)
            for fd in fds:
                os.close(fd)
            children[os.pidfd_open(pid)] = (pid, conn)
            send(conn, {"pid": pid})


if __name__ == "__main__":
    # Gust's own Ctrl-C reaches this process's group: it ends with its stdin instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warm_up()
    sys.stdout.flush()
    sys.stderr.flush()
    serve(sys.argv[1])

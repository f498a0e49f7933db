#!/usr/bin/env python3
"""Plain QEMU-to-QEMU live migration driven over QMP by nothing but this script:
the baseline `pacer-lab bench baseline` compares Pacer against. Python 3 stdlib only.

Starts a source QEMU (in the source network namespace, if given) with the same
machine options Pacer uses, waits for the Pacer guest program's first status line
on its console, starts an incoming QEMU (`-incoming defer`) in the destination
namespace, migrates with the chosen strategy, resumes the guest at the destination,
asks the guest to check its memory, and prints ONE JSON line on stdout:

  {"driver": "plain", "strategy": ..., "status": "completed"|"failed",
   "total_time_ms": ..., "downtime_ms": ..., "bytes_transferred": ...,
   "qemu_total_time_ms": ..., "rounds": ..., "postcopy": ..., "integrity": {...},
   "error": null|"..."}

total_time_ms runs from just before `migrate` (before `stop` for stop-and-copy) to
the guest running at the destination. downtime_ms is QEMU's, or for stop-and-copy
the time from `stop` to the resume. Both QEMUs and the temp dir are removed at exit.
"""
import argparse, ctypes, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

POLL_S = 0.2
UNLIMITED_BPS = 1 << 40
STATUS_MARK = b'PACER {"kind":"status"'
STRATEGIES = ("pre-copy", "post-copy", "hybrid", "stop-and-copy")


def log(msg):
    print(f"plain_migrate: {msg}", file=sys.stderr, flush=True)


class Qmp:
    """A blocking QMP client on a unix socket."""

    def __init__(self, path, proc, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"QEMU exited (status {proc.returncode}) before its QMP socket opened")
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no QMP socket at {path} after {timeout:.0f} s")
                time.sleep(0.05)
        self.sock.settimeout(60)
        self.f = self.sock.makefile("rwb")
        self.events = []  # (name, host time in s) of every event seen
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise RuntimeError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        while True:
            r = self._read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"QMP {name}: {r['error'].get('desc', r['error'])}")
            if "event" in r:
                ts = r.get("timestamp", {})
                self.events.append((r["event"], ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6))

    def last_event(self, name):
        self.cmd("query-status")  # reads the events that have arrived so far
        times = [t for n, t in self.events if n == name]
        return times[-1] if times else None


class Convergence:
    """Pacer's rule (pacer-model convergence.rs, defaults): after 3 rounds, the
    remaining bytes at the last 3 round starts must shrink >= 10%; and no more than
    3 x RAM may be sent."""

    def __init__(self):
        self.last_sync, self.rounds, self.window = None, 0, []

    def observe(self, sync, remaining):
        if sync == 0 or sync == self.last_sync:
            return
        self.last_sync, self.rounds = sync, self.rounds + 1
        self.window = (self.window + [remaining])[-3:]

    def stuck(self, transferred, total):
        if total and transferred > 3 * total:
            return f"sent {transferred} B, more than 3 x RAM"
        if self.rounds < 3:
            return None
        old, new = self.window[0], self.window[-1]
        if new == 0:
            return None
        shrink = (old - new) / old if old else float("-inf")
        return None if shrink >= 0.1 else f"remaining {old} -> {new} B over 3 rounds"


def die_with_parent():
    # PR_SET_PDEATHSIG = 1: QEMU gets SIGKILL if this script dies without cleaning up.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def launch(a, netns, tmp, tag, incoming):
    paths = {k: os.path.join(tmp, f"{tag}-{k}") for k in ("qmp.sock", "serial.sock", "console.log", "stderr.log")}
    argv = [a.qemu, "-name", f"guest=plain-{tag}", "-machine", "q35", "-accel", a.accel,
            "-cpu", "host" if a.accel == "kvm" else "max", "-m", f"{a.memory}M", "-smp", str(a.vcpus),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-chardev", f"socket,id=ser0,path={paths['serial.sock']},server=on,wait=off,"
                        f"logfile={paths['console.log']},logappend=on",
            "-serial", "chardev:ser0", "-qmp", f"unix:{paths['qmp.sock']},server=on,wait=off",
            "-kernel", a.kernel, "-initrd", a.initrd, "-append", a.append]
    if incoming:
        argv += ["-incoming", "defer"]
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv  # ip execs QEMU: same pid
    err = open(paths["stderr.log"], "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, preexec_fn=die_with_parent)
    err.close()
    return proc, paths


def stderr_tail(paths):
    try:
        with open(paths["stderr.log"], "rb") as f:
            return f.read()[-600:].decode(errors="replace").strip()
    except OSError:
        return ""


def wait_guest_ready(paths, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"source QEMU exited: {stderr_tail(paths)}")
        try:
            with open(paths["console.log"], "rb") as f:
                if STATUS_MARK in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"guest did not report status within {timeout:.0f} s")


def verify(serial_path, timeout=180.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(serial_path)
    try:
        s.sendall(b"verify\n")
        buf, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                _, sep, rest = line.decode(errors="replace").strip().partition("PACER ")
                if not sep:
                    continue
                try:
                    v = json.loads(rest)
                except ValueError:
                    continue
                if v.get("kind") == "verify":
                    return {k: v.get(k, 0) for k in ("ok", "pages_checked", "bad_pages", "errors_total", "duration_ms")}
        raise RuntimeError("no verify answer from the guest")
    finally:
        s.close()


def migrate(a, tmp, out):
    postcopy = a.strategy in ("post-copy", "hybrid")
    src, sp = launch(a, a.src_netns, tmp, "src", False)
    procs.append(src)
    qs = Qmp(sp["qmp.sock"], src)
    t_boot = time.monotonic()
    wait_guest_ready(sp, src, a.ready_timeout)
    log(f"guest ready after {time.monotonic() - t_boot:.1f} s; migrating ({a.strategy})")
    dst, dp = launch(a, a.dst_netns, tmp, "dst", True)
    procs.append(dst)
    qd = Qmp(dp["qmp.sock"], dst)
    caps = [{"capability": "postcopy-ram", "state": True}] if postcopy else []
    if caps:
        qd.cmd("migrate-set-capabilities", {"capabilities": caps})
        qs.cmd("migrate-set-capabilities", {"capabilities": caps})
    qd.cmd("migrate-incoming", {"uri": f"tcp:{a.dst_ip}:0"})
    port = qd.cmd("query-migrate")["socket-address"][0]["port"]
    qs.cmd("migrate-set-parameters", {"max-bandwidth": UNLIMITED_BPS, "downtime-limit": 300})

    t0 = time.monotonic()
    stopped = None
    if a.strategy == "stop-and-copy":
        qs.cmd("stop")
        stopped = time.monotonic()
    qs.cmd("migrate", {"uri": f"tcp:{a.dst_ip}:{port}"})
    switched = None
    if a.strategy == "post-copy":
        qs.cmd("migrate-start-postcopy")
        switched = 0
    conv = Convergence()
    while True:
        time.sleep(POLL_S)
        info = qs.cmd("query-migrate")
        status, ram = info.get("status", "none"), info.get("ram", {})
        if status == "completed":
            break
        if status in ("failed", "cancelled", "postcopy-paused"):
            raise RuntimeError(f"migration {status}: {info.get('error-desc', 'no reason given')}")
        if time.monotonic() - t0 > a.timeout:
            qs.cmd("migrate_cancel")
            raise RuntimeError(f"migration not done after {a.timeout:.0f} s (status {status})")
        if a.strategy == "hybrid" and status == "active" and switched is None:
            conv.observe(ram.get("dirty-sync-count", 0), ram.get("remaining", 0))
            why = conv.stuck(ram.get("transferred", 0), ram.get("total", 0))
            if why:
                qs.cmd("migrate-start-postcopy")
                switched = int((time.monotonic() - t0) * 1000)
                log(f"hybrid: not converging ({why}): switched to post-copy")
    deadline = time.monotonic() + 60
    while True:
        state = qd.cmd("query-status")["status"]
        if state == "running":
            break
        if state in ("paused", "postmigrate"):
            qd.cmd("cont")
            continue
        if state not in ("inmigrate", "prelaunch", "finish-migrate", "restore-vm") or time.monotonic() > deadline:
            raise RuntimeError(f"destination is {state}, not running")
        time.sleep(0.05)
    t_run = time.monotonic()
    stop_ts, resume_ts = qs.last_event("STOP"), qd.last_event("RESUME")
    out.update(
        status="completed",
        total_time_ms=int((t_run - t0) * 1000),
        downtime_ms=int((t_run - stopped) * 1000) if stopped is not None else info.get("downtime"),
        bytes_transferred=ram.get("transferred", 0),
        qemu_total_time_ms=info.get("total-time"),
        rounds=ram.get("dirty-sync-count", 0),
        precopy_bytes=ram.get("precopy-bytes", 0),
        downtime_bytes=ram.get("downtime-bytes", 0),
        postcopy_bytes=ram.get("postcopy-bytes", 0),
        postcopy_switch_ms=switched,
        # Guest paused at the source until it runs at the destination, from the
        # timestamps QEMU puts on its STOP and RESUME events (same host clock).
        observed_downtime_ms=int((resume_ts - stop_ts) * 1000) if stop_ts and resume_ts else None,
    )
    try:
        qs.cmd("quit")  # the source copy is stale now
    except (OSError, RuntimeError):
        pass
    out["integrity"] = verify(dp["serial.sock"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--qemu", default="qemu-system-x86_64")
    p.add_argument("--accel", default="tcg", choices=("tcg", "kvm"))
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("--append", required=True)
    p.add_argument("--memory", type=int, required=True, help="MiB")
    p.add_argument("--vcpus", type=int, default=1)
    p.add_argument("--src-netns", default=None, help="omit for no namespace")
    p.add_argument("--dst-netns", default=None, help="omit for no namespace")
    p.add_argument("--dst-ip", default="127.0.0.1")
    p.add_argument("--strategy", required=True, choices=STRATEGIES)
    p.add_argument("--ready-timeout", type=float, default=180.0)
    p.add_argument("--timeout", type=float, default=600.0, help="longest migration, s")
    a = p.parse_args()
    out = {"driver": "plain", "strategy": a.strategy, "status": "failed", "error": None}
    tmp = tempfile.mkdtemp(prefix="plain-migrate-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        migrate(a, tmp, out)
    except BaseException as e:  # also Ctrl-C / SIGTERM: still clean up and report
        out["error"] = "interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit)) else str(e) or type(e).__name__
        if out["status"] == "completed" and "integrity" not in out:
            out["error"] = f"memory check: {out['error']}"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out), flush=True)
    return 0 if out["status"] == "completed" and out["error"] is None else 1


procs = []
if __name__ == "__main__":
    sys.exit(main())

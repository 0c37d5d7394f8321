"""Remote benchmark: a multi-GB checkpoint read over loopback HTTP by range
against the same file read locally, in one run. Debian's nginx (which
honours Range) serves bench/out/ on 127.0.0.1; the 3.8 GB Chinese-CLIP
ViT-H-14 training checkpoint (.pt) and its safetensors are the ones
bench/inspect_bench.py makes.

For each file, `ckptcheck inspect --json` and `ckptcheck scan --json` are run
on the local path and on the URL; the script checks that the two JSONs are
the same (file names aside: same tensors, offsets, bytes read by the
parsers, same scan statistics to the last bit), and prints the requests
sent, the bytes fetched and the time of each.

Run: `cargo xtask bench remote`, or `python bench/remote_bench.py` with a
Python that has torch and safetensors (to make the files once). Needs
nginx (`apt-get install nginx`). Not a test: nothing here asserts a time.
"""

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inspect_bench  # noqa: E402  (the same files as the inspect benchmark)

ROOT = inspect_bench.ROOT
OUT = inspect_bench.OUT


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(port):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    work = OUT / "nginx"
    work.mkdir(parents=True, exist_ok=True)
    config = work / "nginx.conf"
    config.write_text(
        f"""user root root;
daemon off; master_process off; worker_processes 1;
pid {work}/nginx.pid; error_log {work}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off; sendfile on;
  client_body_temp_path {work}/b; proxy_temp_path {work}/p; fastcgi_temp_path {work}/f;
  uwsgi_temp_path {work}/u; scgi_temp_path {work}/s;
  server {{ listen 127.0.0.1:{port}; root {OUT}; }}
}}
"""
    )
    process = subprocess.Popen([nginx, "-c", str(config), "-p", str(work)])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise SystemExit("nginx did not start")


def run(binary, *args):
    start = time.perf_counter()
    out = subprocess.run([binary, *args, "--json"], capture_output=True, check=False)
    seconds = time.perf_counter() - start
    return json.loads(out.stdout), seconds


def without_names(value, names):
    if isinstance(value, dict):
        return {k: without_names(v, names) for k, v in value.items() if k != "remote"}
    if isinstance(value, list):
        return [without_names(v, names) for v in value]
    if isinstance(value, str):
        for name in names:
            value = value.replace(name, "FILE")
    return value


def main():
    subprocess.run(["cargo", "build", "--release", "--bin", "ckptcheck"], cwd=ROOT, check=True)
    binary = ROOT / "target" / "release" / "ckptcheck"
    pt, st = inspect_bench.make_files()
    port = free_port()
    nginx = start_nginx(port)
    try:
        for path in (pt, st):
            url = f"http://127.0.0.1:{port}/{path.name}"
            size = path.stat().st_size
            print(f"{path.name}: {size / 1e9:.2f} GB")
            for command in ("inspect", "scan"):
                local, local_s = run(binary, command, str(path))
                remote, remote_s = run(binary, command, url)
                same = without_names(local, [str(path)]) == without_names(remote, [url])
                stats = remote.get("remote", [{}])[0]
                print(
                    f"  {command:<8} local {local_s * 1000:8.1f} ms | over HTTP {remote_s * 1000:8.1f} ms, "
                    f"{stats.get('requests')} requests, {stats.get('bytes_fetched', 0) / 1e6:.2f} MB fetched "
                    f"({stats.get('bytes_fetched', 0) / size:.2%} of the file) | same JSON: {same}"
                )
                if not same:
                    raise SystemExit(f"{command} over HTTP differs from the local read of {path}")
    finally:
        nginx.kill()


if __name__ == "__main__":
    main()

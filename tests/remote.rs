//! Checkpoints at URLs, read by range, against a real HTTP server on
//! loopback: Debian's nginx, started here with its own config (it honours
//! `Range`), serving the fixtures and a sparse multi-GB file. Each case
//! reads a URL with the CLI and compares with the local read of the same
//! file: same JSON, with the requests and bytes fetched reported. Also: a
//! location with Range turned off (`max_ranges 0`), a slow one
//! (`limit_rate`), one that drops every connection (`return 444`), 403 and
//! 404, an hf:// URL through `HF_ENDPOINT` with a Hub-like redirect and
//! token, and a server of this file's own that drops the first connection
//! (the retry has to recover).
//!
//! Without nginx the tests say so and pass, unless `CKPTCHECK_REQUIRE_NGINX`
//! is set, as `cargo xtask test` sets it (after installing nginx).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const CKPTCHECK: &str = env!("CARGO_BIN_EXE_ckptcheck");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the server on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The nginx of these tests, serving `www` (the fixtures, and the sparse
/// big file), killed when the test process ends.
struct Nginx {
    port: u16,
}

/// A sparse safetensors file of just over 5 GiB: a real header and a
/// hole for data. Reading it whole would take a while; reading it by
/// range takes a few requests.
const BIG_BYTES: u64 = 5 * 1024 * 1024 * 1024 + 4096;

fn make_www(www: &Path) {
    std::fs::create_dir_all(www).expect("www");
    let fixtures = root().join("tests/fixtures");
    let link = www.join("fixtures");
    if !link.exists() {
        std::os::unix::fs::symlink(&fixtures, &link).expect("symlink the fixtures");
    }
    // 20 tensors of 256 MiB of f32 each (plus one small), 5 GiB of data.
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    let tensor_bytes = 256 * 1024 * 1024u64;
    for i in 0..20 {
        header.insert(
            format!("layers.{i}.weight"),
            serde_json::json!({"dtype": "F32", "shape": [8192, 8192], "data_offsets": [offset, offset + tensor_bytes]}),
        );
        offset += tensor_bytes;
    }
    let mut text = serde_json::to_string(&header).expect("header");
    // The small tensor takes the rest of the file after the header (its
    // entry takes fewer than 256 bytes of the header).
    let data_start = (8 + text.len() as u64 + 256).div_ceil(8) * 8;
    let rest = BIG_BYTES - data_start - offset;
    assert_eq!(rest % 4, 0);
    header.insert(
        "tail".to_string(),
        serde_json::json!({"dtype": "F32", "shape": [rest / 4], "data_offsets": [offset, offset + rest]}),
    );
    text = serde_json::to_string(&header).expect("header");
    let padded = 8 + text.len() as u64;
    let pad = (data_start - padded) as usize;
    text.push_str(&" ".repeat(pad));
    let path = www.join("big.safetensors");
    let mut file = std::fs::File::create(&path).expect("big file");
    file.write_all(&(text.len() as u64).to_le_bytes())
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.set_len(BIG_BYTES))
        .expect("write the big file");
}

fn nginx() -> Option<&'static Nginx> {
    static NGINX: OnceLock<Option<Nginx>> = OnceLock::new();
    NGINX
        .get_or_init(|| {
            let Some(binary) = nginx_binary() else {
                assert!(
                    std::env::var_os("CKPTCHECK_REQUIRE_NGINX").is_none(),
                    "CKPTCHECK_REQUIRE_NGINX is set but nginx is not installed"
                );
                eprintln!(
                    "remote tests: nginx is not installed; skipped (cargo xtask test installs it)"
                );
                return None;
            };
            let dir = root().join("target/tmp/remote-tests");
            let www = dir.join("www");
            make_www(&www);
            let port = free_port();
            let user = if Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
            {
                "user root root;"
            } else {
                ""
            };
            let d = dir.display();
            let w = www.display();
            let config = format!(
                r#"{user}
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {w};
        location /norange/ {{ alias {w}/; max_ranges 0; }}
        location /slow/ {{ alias {w}/; limit_rate 256k; }}
        location /drop/ {{ return 444; }}
        location /forbidden/ {{ return 403; }}
        # Stand-ins for S3, Azure and GCS endpoints: path-style S3 wants a
        # request signed with the access key the test sets, Azure one
        # signed with the account's shared key; GCS is read unsigned.
        location /s3-bucket/ {{
            if ($http_authorization !~ "^AWS4-HMAC-SHA256 Credential=test-key-id/") {{ return 403; }}
            alias {w}/;
        }}
        location /testaccount/container/ {{
            if ($http_authorization !~ "^SharedKey testaccount:") {{ return 403; }}
            alias {w}/;
        }}
        location /gcs-bucket/ {{ alias {w}/; }}
        # The Hub's resolve URLs redirect to where the bytes are; this one
        # wants the token the tests set.
        location ~ ^/hub/[^/]+/[^/]+/resolve/main/(.*)$ {{
            if ($http_authorization != "Bearer test-token") {{ return 401; }}
            return 302 /$1;
        }}
    }}
}}
"#
            );
            let config_path = dir.join("nginx.conf");
            std::fs::write(&config_path, config).expect("nginx.conf");
            // Started from a thread that lives as long as the test process,
            // with the kernel told to stop nginx when that thread ends
            // (test threads end with their test; a static is never dropped).
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::os::unix::process::CommandExt;
                let mut command = Command::new(binary);
                command.arg("-c").arg(&config_path).arg("-p").arg(&dir);
                // SAFETY: prctl is async-signal-safe and touches no memory
                // of the parent.
                unsafe {
                    command.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let child = command.spawn().expect("start nginx");
                sender.send(child.id()).expect("send");
                let _keep = child;
                loop {
                    std::thread::park();
                }
            });
            let _pid = receiver.recv().expect("nginx started");
            wait_for(port);
            Some(Nginx { port })
        })
        .as_ref()
}

fn url(server: &Nginx, path: &str) -> String {
    format!("http://127.0.0.1:{}/{path}", server.port)
}

/// The local path of a file nginx serves at `path`.
fn served_path(path: &str) -> String {
    root()
        .join("target/tmp/remote-tests/www")
        .join(path)
        .display()
        .to_string()
}

fn ckptcheck(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(CKPTCHECK);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run ckptcheck")
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A report with the file names (a URL here, a path there) and the remote
/// figures taken out, for comparing a remote read with a local one.
fn without_names(mut value: Value, names: &[&str]) -> Value {
    fn strip(value: &mut Value, names: &[&str]) {
        match value {
            Value::String(text) => {
                for name in names {
                    if text.contains(name) {
                        *text = text.replace(name, "FILE");
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| strip(v, names)),
            Value::Object(map) => {
                map.remove("remote");
                map.values_mut().for_each(|v| strip(v, names));
            }
            _ => {}
        }
    }
    strip(&mut value, names);
    value
}

fn remote_figures(report: &Value) -> (u64, u64) {
    let remote = &report["remote"][0];
    (
        remote["requests"].as_u64().expect("requests"),
        remote["bytes_fetched"].as_u64().expect("bytes_fetched"),
    )
}

#[test]
fn inspect_over_http_equals_the_local_read_on_every_container() {
    let Some(server) = nginx() else { return };
    let www = root().join("target/tmp/remote-tests/www");
    for fixture in [
        "fixtures/formats/small.safetensors",
        "fixtures/formats/dtypes.pt",
        "fixtures/formats/legacy.pt",
        "fixtures/formats/tar.pt",
        "fixtures/formats/small.gguf",
        "fixtures/formats/bigendian.pt",
        "fixtures/cn_clip/clip_cn_vit-l-14-336.shapes.pt",
    ] {
        let local_path = www.join(fixture);
        let local_name = local_path.display().to_string();
        let remote_name = url(server, fixture);
        let local = ckptcheck(&["inspect", "--json", &local_name], &[]);
        let remote = ckptcheck(&["inspect", "--json", &remote_name], &[]);
        assert_eq!(local.status.code(), remote.status.code(), "{fixture}");
        let remote_json = json_of(&remote);
        let (requests, fetched) = remote_figures(&remote_json);
        let size = std::fs::metadata(&local_path).expect("size").len();
        assert!(requests >= 2, "{fixture}: a HEAD and at least one GET");
        assert!(fetched <= size, "{fixture}: fetched {fetched} of {size}");
        assert_eq!(
            without_names(json_of(&local), &[&local_name]),
            without_names(remote_json, &[&remote_name]),
            "{fixture}"
        );
    }
}

#[test]
fn a_multi_gigabyte_file_is_read_by_a_few_ranges() {
    let Some(server) = nginx() else { return };
    let local_path = root().join("target/tmp/remote-tests/www/big.safetensors");
    let local_name = local_path.display().to_string();
    let remote_name = url(server, "big.safetensors");
    let local = json_of(&ckptcheck(&["inspect", "--json", &local_name], &[]));
    let remote = json_of(&ckptcheck(&["inspect", "--json", &remote_name], &[]));
    let (requests, fetched) = remote_figures(&remote);
    assert_eq!(local["file_bytes"], BIG_BYTES);
    assert_eq!(local["tensors"].as_array().map(Vec::len), Some(21));
    // A HEAD, then the header's blocks.
    assert!(requests <= 4, "{requests} requests");
    assert!(fetched <= 256 * 1024, "{fetched} bytes fetched");
    assert_eq!(
        without_names(local, &[&local_name]),
        without_names(remote, &[&remote_name])
    );
}

#[test]
fn scan_over_http_reads_the_same_weights_as_the_local_scan() {
    let Some(server) = nginx() else { return };
    let www = root().join("target/tmp/remote-tests/www");
    for fixture in [
        "fixtures/formats/dtypes.pt",
        "fixtures/formats/small.safetensors",
        "fixtures/formats/legacy.pt",
    ] {
        let local_name = www.join(fixture).display().to_string();
        let remote_name = url(server, fixture);
        let local = ckptcheck(&["scan", "--json", &local_name], &[]);
        let remote = ckptcheck(&["scan", "--json", &remote_name], &[]);
        assert_eq!(local.status.code(), remote.status.code(), "{fixture}");
        let remote_json = json_of(&remote);
        let (_, fetched) = remote_figures(&remote_json);
        assert!(fetched > 0);
        assert_eq!(
            without_names(json_of(&local), &[&local_name]),
            without_names(remote_json, &[&remote_name]),
            "{fixture}"
        );
    }
}

#[test]
fn a_slow_server_is_waited_for() {
    let Some(server) = nginx() else { return };
    let fixture = "fixtures/cn_clip/clip_cn_vit-l-14-336.shapes.pt";
    let local_name = served_path(fixture);
    let remote_name = url(server, &format!("slow/{fixture}"));
    let local = json_of(&ckptcheck(&["inspect", "--json", &local_name], &[]));
    let remote = json_of(&ckptcheck(&["inspect", "--json", &remote_name], &[]));
    assert_eq!(
        without_names(local, &[&local_name]),
        without_names(remote, &[&remote_name])
    );
}

/// The error a failed remote read gives, as `--json` prints it.
fn remote_error(name: &str, env: &[(&str, &str)]) -> Value {
    let output = ckptcheck(&["inspect", "--json", name], env);
    assert_eq!(output.status.code(), Some(2), "{name}");
    let error = json_of(&output)["error"].clone();
    assert_eq!(error["kind"], "remote", "{name}: {error}");
    assert_eq!(error["file"], name);
    assert!(error["fix"].as_str().is_some_and(|f| !f.is_empty()));
    error
}

#[test]
fn remote_failures_say_what_went_wrong() {
    let Some(server) = nginx() else { return };
    let cases = [
        (
            "norange/fixtures/formats/dtypes.pt",
            "does not honour HTTP Range",
        ),
        ("fixtures/formats/no-such-file.pt", "not found (HTTP 404)"),
        ("forbidden/model.pt", "access denied (HTTP 403)"),
        ("drop/model.pt", "after 5 retries"),
    ];
    for (path, expected) in cases {
        let error = remote_error(&url(server, path), &[]);
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{path}: {message}");
    }
}

#[test]
fn hf_urls_go_to_the_hubs_resolve_url_with_the_token() {
    let Some(server) = nginx() else { return };
    let endpoint = url(server, "hub");
    let name = "hf://someone/some-model/fixtures/formats/small.safetensors";
    let local_name = root()
        .join("target/tmp/remote-tests/www/fixtures/formats/small.safetensors")
        .display()
        .to_string();
    let with_token = ckptcheck(
        &["inspect", "--json", name],
        &[("HF_ENDPOINT", &endpoint), ("HF_TOKEN", "test-token")],
    );
    assert_eq!(with_token.status.code(), Some(0));
    let local = json_of(&ckptcheck(&["inspect", "--json", &local_name], &[]));
    assert_eq!(
        without_names(local, &[&local_name]),
        without_names(json_of(&with_token), &[name])
    );
    let error = remote_error(name, &[("HF_ENDPOINT", &endpoint), ("HF_TOKEN", "")]);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("HTTP 401")),
        "{error}"
    );
}

#[test]
fn a_remote_shard_index_brings_its_shards() {
    let Some(server) = nginx() else { return };
    let folder = root().join("tests/fixtures/formats/sharded");
    let index = std::fs::read_dir(&folder)
        .expect("sharded fixture")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .find(|name| name.ends_with(".index.json"))
        .expect("an index");
    let local = json_of(&ckptcheck(
        &["inspect", "--json", &folder.display().to_string()],
        &[],
    ));
    let remote_name = url(server, &format!("fixtures/formats/sharded/{index}"));
    let remote = json_of(&ckptcheck(&["inspect", "--json", &remote_name], &[]));
    assert_eq!(local["tensors"], remote["tensors"]);
    assert_eq!(local["format"], remote["format"]);
    assert!(remote["remote"]
        .as_array()
        .is_some_and(|files| files.len() >= 2));
}

#[test]
fn audit_reads_urls_like_files() {
    let Some(server) = nginx() else { return };
    let files = [
        url(server, "fixtures/formats/small.safetensors"),
        url(server, "fixtures/formats/evil_os_system.pt"),
        url(server, "fixtures/formats/no-such-file.pt"),
    ];
    let mut args = vec!["audit", "--jsonl"];
    args.extend(files.iter().map(String::as_str));
    let output = ckptcheck(&args, &[]);
    assert_eq!(output.status.code(), Some(2));
    let verdicts: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("file").is_some())
        .map(|v| v["verdict"].clone())
        .collect();
    assert_eq!(verdicts, ["ok", "unsafe", "unreadable"]);
}

/// A server of this test's own that serves one file with Range support
/// and drops the first `drops` connections without a word: the retry
/// with backoff has to get through.
fn flaky_server(file: PathBuf, drops: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if seen.fetch_add(1, Ordering::SeqCst) < drops {
                drop(stream);
                continue;
            }
            let file = file.clone();
            std::thread::spawn(move || serve_ranges(stream, &file));
        }
    });
    (port, connections)
}

fn serve_ranges(stream: TcpStream, file: &Path) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut range = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                let (start, end) = value.split_once('-').unwrap_or(("0", ""));
                range = Some((start.parse::<u64>().unwrap_or(0), end.parse::<u64>().ok()));
            }
        }
        let mut body_file = std::fs::File::open(file).expect("open");
        let size = body_file.metadata().expect("size").len();
        let head = request_line.starts_with("HEAD");
        let (status, start, end) = match range {
            Some((start, end)) => {
                let end = end.unwrap_or(size - 1).min(size - 1);
                ("206 Partial Content", start, end)
            }
            None => ("200 OK", 0, size - 1),
        };
        let length = end + 1 - start;
        let mut response =
            format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\nAccept-Ranges: bytes\r\n");
        if range.is_some() {
            response.push_str(&format!("Content-Range: bytes {start}-{end}/{size}\r\n"));
        }
        response.push_str("\r\n");
        let mut body = vec![0u8; if head { 0 } else { length as usize }];
        body_file
            .seek(SeekFrom::Start(start))
            .and_then(|_| body_file.read_exact(&mut body))
            .expect("read");
        if writer
            .write_all(response.as_bytes())
            .and_then(|()| writer.write_all(&body))
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn dropped_connections_are_retried_with_backoff() {
    // nginx picks its port by binding port 0 and letting go of it; this
    // server's port 0 could be that very port if both started at once.
    let _ = nginx();
    let file = root().join("tests/fixtures/formats/dtypes.pt");
    let (port, connections) = flaky_server(file.clone(), 2);
    let remote_name = format!("http://127.0.0.1:{port}/dtypes.pt");
    let local_name = file.display().to_string();
    let remote = ckptcheck(&["inspect", "--json", &remote_name], &[]);
    assert_eq!(
        remote.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    assert!(connections.load(Ordering::SeqCst) > 2);
    let local = json_of(&ckptcheck(&["inspect", "--json", &local_name], &[]));
    assert_eq!(
        without_names(local, &[&local_name]),
        without_names(json_of(&remote), &[&remote_name])
    );
}

#[test]
fn object_store_urls_read_with_credentials_from_the_environment() {
    let Some(server) = nginx() else { return };
    let endpoint = url(server, "");
    let endpoint = endpoint.trim_end_matches('/');
    let azure_endpoint = format!("{endpoint}/testaccount");
    let fixture = "fixtures/formats/small.safetensors";
    let local_name = served_path(fixture);
    let local = json_of(&ckptcheck(&["inspect", "--json", &local_name], &[]));
    let s3 = [
        ("AWS_ENDPOINT", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test-key-id"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_REGION", "us-east-1"),
    ];
    let azure = [
        ("AZURE_STORAGE_ACCOUNT_NAME", "testaccount"),
        // Any base64 key: nginx checks that requests are signed with it.
        (
            "AZURE_STORAGE_ACCOUNT_KEY",
            "dGVzdC1rZXktZm9yLWNrcHRjaGVjaw==",
        ),
        ("AZURE_ENDPOINT", &azure_endpoint),
        ("AZURE_ALLOW_HTTP", "true"),
    ];
    let gcs = [
        ("GOOGLE_BASE_URL", endpoint),
        ("GOOGLE_SKIP_SIGNATURE", "true"),
    ];
    let cases: [(String, &[(&str, &str)]); 3] = [
        (format!("s3://s3-bucket/{fixture}"), &s3),
        (format!("az://container/{fixture}"), &azure),
        (format!("gs://gcs-bucket/{fixture}"), &gcs),
    ];
    for (name, env) in &cases {
        let output = ckptcheck(&["inspect", "--json", name], env);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            without_names(local.clone(), &[&local_name]),
            without_names(json_of(&output), &[name]),
            "{name}"
        );
    }
    // Without the credentials the store signs nothing, and the error
    // says which variables to set.
    let unsigned: Vec<(&str, &str)> = s3
        .iter()
        .copied()
        .filter(|(key, _)| !key.contains("KEY"))
        .chain([("AWS_SKIP_SIGNATURE", "true")])
        .collect();
    let error = remote_error(&cases[0].0, &unsigned);
    let fix = error["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("AWS_ACCESS_KEY_ID"), "{error}");
}

#[test]
fn check_over_http_gives_the_local_report() {
    let Some(server) = nginx() else { return };
    let fixture = "fixtures/cn_clip/clip_cn_vit-l-14-336.shapes.pt";
    let local_name = served_path(fixture);
    let remote_name = url(server, fixture);
    let check = |name: &str| {
        let config = "ViT-B-16@RoBERTa-wwm-ext-base-chinese";
        ckptcheck(
            &[
                "check", name, "--config", config, "--loader", "cn-clip", "--json",
            ],
            &[],
        )
    };
    let local = check(&local_name);
    let remote = check(&remote_name);
    // Won't load, both ways: 153 size mismatches, explained the same.
    assert_eq!(local.status.code(), Some(1));
    assert_eq!(remote.status.code(), Some(1));
    let remote_json = json_of(&remote);
    assert_eq!(
        remote_json["size_mismatches"].as_array().map(Vec::len),
        Some(153)
    );
    let (requests, _) = remote_figures(&remote_json);
    assert!(requests >= 2);
    assert_eq!(
        without_names(json_of(&local), &[&local_name]),
        without_names(remote_json, &[&remote_name])
    );
}

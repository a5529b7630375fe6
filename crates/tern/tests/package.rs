//! The Debian package, built by `packaging/build-deb` from the binary under test: its control
//! data, an installation into a throwaway root by dpkg itself (maintainer scripts included,
//! run for that root), `systemd-analyze verify` on its unit, and the installed binary started
//! as the unit starts it — user `tern` with only CAP_NET_BIND_SERVICE, no `--config`, systemd's
//! `INVOCATION_ID` set — in private mount and network namespaces where the root's `/etc` and
//! `/var/lib` lie over the real ones: it must read `/etc/tern/tern.toml`, listen on port 25,
//! refuse to relay, survive `systemctl reload` (SIGHUP) and stop cleanly on SIGTERM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::temp_dir;

/// Runs `program args…`, panics with its output unless it succeeds, returns stdout.
fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command:?} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Builds the package from the binary under test; returns its path.
fn build(out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let printed = run_ok(
        Command::new(root.join("packaging/build-deb"))
            .args(["--fast", "--binary", env!("CARGO_BIN_EXE_tern"), "--out"])
            .arg(out),
    );
    PathBuf::from(printed.trim())
}

/// An empty root dpkg can install into: its database and the files `useradd --prefix` edits.
fn throwaway_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for sub in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/alternatives",
        "etc/alternatives",
        "usr/sbin",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for (file, text) in [
        ("var/lib/dpkg/status", ""),
        ("var/lib/dpkg/available", ""),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\n"),
    ] {
        std::fs::write(root.join(file), text).unwrap();
    }
    root
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_debian_package_installs_and_runs_as_its_unit_says() {
    let dir = temp_dir("package");
    let deb = build(&dir.join("out"));
    let info = run_ok(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for field in ["Package: tern", "Provides: mail-transport-agent", "Depends: libc6 (>= "] {
        assert!(info.contains(field), "{field:?} missing:\n{info}");
    }
    let contents = run_ok(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for file in [
        "./usr/bin/tern",
        "./usr/lib/tern/sendmail -> ../../bin/tern",
        "./etc/tern/tern.toml",
        "./usr/lib/systemd/system/tern.service",
        "./usr/share/doc/tern/copyright",
    ] {
        assert!(contents.contains(file), "{file:?} missing:\n{contents}");
    }

    // dpkg installs it, running the maintainer scripts for that root (DPKG_ROOT).
    let root = throwaway_root(&dir);
    run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--force-depends", "--log=/dev/null", "-i"])
            .arg(&deb),
    );
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains("Package: tern\nStatus: install ok installed"), "{status}");
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/tern.conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/tern/tern.toml");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let tern = passwd.lines().find(|l| l.starts_with("tern:")).expect("tern user");
    assert!(tern.ends_with(":/var/lib/tern:/usr/sbin/nologin"), "{tern}");
    let uid: u32 = tern.split(':').nth(2).unwrap().parse().unwrap();
    assert_eq!(mode(&root.join("var/lib/tern")), 0o751);
    assert_eq!(mode(&root.join("var/lib/tern/drop/new")), 0o1733);
    assert_eq!(mode(&root.join("etc/tern/tern.toml")), 0o640);
    assert_eq!(
        std::fs::read_link(root.join("usr/sbin/sendmail")).unwrap(),
        Path::new("/etc/alternatives/sendmail")
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/alternatives/sendmail")).unwrap(),
        Path::new("/usr/lib/tern/sendmail")
    );

    // The root's /usr and /etc over the real ones, in a private mount namespace.
    let overlay = |dir: &str| {
        format!("mount -t overlay overlay -o lowerdir={}/{dir}:/{dir} /{dir}", root.display())
    };
    let verify = run_ok(Command::new("unshare").args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!(
            "{} && {} && systemd-analyze verify /usr/lib/systemd/system/tern.service && \
             systemd-analyze security --offline=yes /usr/lib/systemd/system/tern.service",
            overlay("usr"),
            overlay("etc")
        ),
    ]));
    assert!(verify.contains("Overall exposure level for tern.service"), "{verify}");

    // Started as the unit starts it, in its own network namespace (port 25 is private there).
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let log = dir.join("tern.log");
    let script = format!(
        r#"set -e
ip link set lo up
{etc}
mount -t overlay overlay -o lowerdir=/var/lib,upperdir={root}/var/lib,workdir={work} /var/lib
INVOCATION_ID=test setpriv --reuid={uid} --regid={uid} --clear-groups \
  --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
  --bounding-set=-all,+net_bind_service {root}/usr/bin/tern serve 2>{log} &
pid=$!
for i in $(seq 100); do grep -q "tern ready" {log} && break; sleep 0.1; done
python3 - <<'PY'
import smtplib
# From 127.0.0.2: not in the packaged trusted_networks (127.0.0.1/32, ::1/128).
s = smtplib.SMTP("127.0.0.1", 25, timeout=10, source_address=("127.0.0.2", 0))
code, text = s.ehlo("client.test")
print("EHLO", code)
s.mail("someone@elsewhere.test")
code, text = s.rcpt("victim@far.away.test")
print("RCPT", code, text.decode())
s.quit()
PY
kill -HUP $pid
for i in $(seq 100); do grep -q "configuration reloaded" {log} && break; sleep 0.1; done
kill -0 $pid && echo "alive after SIGHUP"
kill -TERM $pid
wait $pid && echo "exit 0"
"#,
        etc = overlay("etc"),
        root = root.display(),
        work = work.display(),
        log = log.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "-n", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let all = format!("{stdout}{}\n--- tern's log:\n{log}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(stdout.contains("EHLO 250"), "{all}");
    assert!(
        stdout.contains("RCPT 554") || stdout.contains("RCPT 550"),
        "never an open relay:\n{all}"
    );
    assert!(stdout.contains("alive after SIGHUP") && stdout.contains("exit 0"), "{all}");
    assert!(log.contains("configuration loaded file=/etc/tern/tern.toml"), "{all}");
    assert!(log.contains("SMTP listening addr=0.0.0.0:25 role=mx"), "{all}");
    // The store went where the packaged configuration says, owned by the tern user.
    let db = root.join("var/lib/tern").join(tern_store::sqlite::DATABASE_FILE);
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&db).unwrap());
    assert_eq!(owner, uid, "{all}");
    // 61 MB of package, root and store: gone when the test passes (kept for a look when not).
    let _ = std::fs::remove_dir_all(&dir);
}

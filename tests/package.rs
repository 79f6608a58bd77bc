//! The distro packages as built: the .deb passes lintian with no errors and carries what an
//! operator needs where Debian expects it; the .rpm's file list, scriptlets and dependencies are
//! right, and its payload installs into a scratch root and runs. Root only (CI is root).
//! The install/upgrade/remove/purge life cycle under a booted systemd is tests/package_system.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[path = "package/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::{packages, require_root, run, stdout};

/// Files the .deb must install (the rpm's list is checked separately: its unit dir differs).
const DEB_FILES: &[&str] = &[
    "./usr/sbin/hearthd",
    "./usr/bin/hearth",
    "./usr/libexec/hearth/hearth-native",
    "./etc/hearth/controller.toml",
    "./etc/hearth/invoker.toml",
    "./lib/systemd/system/hearth-controller.socket",
    "./lib/systemd/system/hearth-controller.service",
    "./lib/systemd/system/hearth-invoker.socket",
    "./lib/systemd/system/hearth-invoker.service",
    "./usr/lib/sysusers.d/hearth.conf",
    "./usr/lib/tmpfiles.d/hearth.conf",
    "./usr/share/man/man1/hearth.1.gz",
    "./usr/share/man/man1/hearth-action-invoke.1.gz",
    "./usr/share/man/man1/hearthd.1.gz",
    "./usr/share/bash-completion/completions/hearth",
    "./usr/share/zsh/vendor-completions/_hearth",
    "./usr/share/fish/vendor_completions.d/hearth.fish",
    "./usr/share/doc/hearth/copyright",
];

const RPM_FILES: &[&str] = &[
    "/usr/sbin/hearthd",
    "/usr/bin/hearth",
    "/usr/libexec/hearth/hearth-native",
    "/etc/hearth/controller.toml",
    "/etc/hearth/invoker.toml",
    "/usr/lib/systemd/system/hearth-controller.socket",
    "/usr/lib/systemd/system/hearth-controller.service",
    "/usr/lib/systemd/system/hearth-invoker.socket",
    "/usr/lib/systemd/system/hearth-invoker.service",
    "/usr/lib/systemd/system-preset/50-hearth.preset",
    "/usr/lib/sysusers.d/hearth.conf",
    "/usr/lib/tmpfiles.d/hearth.conf",
    "/usr/share/man/man1/hearth.1",
    "/usr/share/man/man1/hearthd.1",
    "/usr/share/bash-completion/completions/hearth",
    "/usr/share/zsh/site-functions/_hearth",
    "/usr/share/fish/vendor_completions.d/hearth.fish",
    "/var/lib/hearth",
];

fn deb_field(deb: &std::path::Path, field: &str) -> String {
    stdout(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field)).trim().to_owned()
}

#[test]
fn deb_passes_lintian_without_errors() {
    require_root();
    let p = packages();
    let out = Command::new("lintian")
        .args(["--allow-root", "--fail-on", "error"])
        .arg(&p.deb)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("lintian {}:\n{text}", p.deb.display());
    let errors: Vec<_> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors: {errors:#?}");
    assert!(out.status.success(), "lintian failed: {text}");
}

#[test]
fn deb_installs_binaries_units_configs_docs_where_debian_expects_them() {
    require_root();
    let p = packages();
    let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(&p.deb));
    let files: BTreeSet<&str> =
        listing.lines().filter_map(|l| l.split_whitespace().nth(5)).collect();
    for f in DEB_FILES {
        assert!(files.contains(f), "{f} missing from the .deb:\n{listing}");
    }
    // Nothing of the build tree leaks in.
    assert!(
        !files.iter().any(|f| f.contains("target/") || f.contains("generated-assets")),
        "{listing}"
    );

    let depends = deb_field(&p.deb, "Depends");
    for dep in ["runc", "python3", "systemd", "libc6"] {
        assert!(depends.contains(dep), "Depends lacks {dep}: {depends}");
    }
    assert!(deb_field(&p.deb, "Recommends").contains("nodejs"));
    assert_eq!(deb_field(&p.deb, "Version"), p.version);

    let ctl = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-e").arg(&p.deb).arg(ctl.path()));
    let conffiles = std::fs::read_to_string(ctl.path().join("conffiles")).unwrap();
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/hearth/controller.toml", "/etc/hearth/invoker.toml"],
        "the commented configs are conffiles, the generated key is not"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = ctl.path().join(script);
        run(Command::new("dash").arg("-n").arg(&path));
        assert!(!std::fs::read_to_string(&path).unwrap().contains("#DEBHELPER#"));
    }
    let postinst = std::fs::read_to_string(ctl.path().join("postinst")).unwrap();
    // The user exists before the state dir is made for it, both before the key is created.
    let at =
        |s: &str| postinst.find(s).unwrap_or_else(|| panic!("postinst lacks {s:?}:\n{postinst}"));
    assert!(at("systemd-sysusers") < at("systemd-tmpfiles"));
    assert!(at("systemd-tmpfiles") < at("namespace create"));
    // Sockets enabled and started on install; services neither, only try-restarted on upgrade.
    assert!(postinst.contains("deb-systemd-helper enable 'hearth-controller.socket'"));
    assert!(postinst
        .contains("deb-systemd-invoke start 'hearth-controller.socket' 'hearth-invoker.socket'"));
    assert!(postinst.contains(
        "deb-systemd-invoke try-restart 'hearth-controller.service' 'hearth-invoker.service'"
    ));
    // debhelper's "don't enable" snippet: a service is only re-enabled if the admin enabled it.
    assert!(postinst.contains("if deb-systemd-helper debian-installed 'hearth-controller.service'"));
    assert!(!postinst.contains("invoke start 'hearth-controller.service'"));
    let prerm = std::fs::read_to_string(ctl.path().join("prerm")).unwrap();
    assert!(prerm.contains("stop hearth-controller.service hearth-invoker.service"), "{prerm}");
    let postrm = std::fs::read_to_string(ctl.path().join("postrm")).unwrap();
    assert!(postrm.contains("rm -rf /var/lib/hearth"), "{postrm}");
}

#[test]
fn rpm_file_list_scripts_and_dependencies() {
    require_root();
    let p = packages();
    let list = stdout(Command::new("rpm").arg("-qpl").arg(&p.rpm));
    let files: BTreeSet<&str> = list.lines().collect();
    for f in RPM_FILES {
        assert!(files.contains(f), "{f} missing from the rpm:\n{list}");
    }
    let configs = stdout(Command::new("rpm").arg("-qpc").arg(&p.rpm));
    assert_eq!(
        configs.lines().collect::<Vec<_>>(),
        ["/etc/hearth/controller.toml", "/etc/hearth/invoker.toml"]
    );
    // %config(noreplace): flag 'n' in --dump's config column is not exposed; rpm -qp --qf is.
    let flags = stdout(
        Command::new("rpm")
            .args(["-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"])
            .arg(&p.rpm),
    );
    for conf in ["/etc/hearth/controller.toml", "/etc/hearth/invoker.toml"] {
        let line = flags.lines().find(|l| l.starts_with(conf)).unwrap();
        assert!(line.ends_with("cn"), "{conf} is not %config(noreplace): {line}");
    }
    let key = flags.lines().find(|l| l.starts_with("/etc/hearth/admin.key")).unwrap();
    assert!(
        key.ends_with('g'),
        "admin.key must be %ghost (made by %post, owned by the package): {key}"
    );

    let scripts = stdout(Command::new("rpm").args(["-qp", "--scripts"]).arg(&p.rpm));
    for needle in [
        "systemd-sysusers",
        "systemctl --no-reload preset hearth-controller.socket",
        "systemctl start hearth-controller.socket hearth-invoker.socket",
        "systemctl --no-reload disable --now",
        "systemctl try-restart hearth-controller.service hearth-invoker.service",
        "namespace create admin",
        "rm -rf /var/lib/hearth",
        "u hearth -:hearth",
    ] {
        assert!(scripts.contains(needle), "rpm scripts lack {needle:?}:\n{scripts}");
    }
    assert!(
        !scripts.contains("/usr/com"),
        "a Debian-rpm macro leaked into the scripts:\n{scripts}"
    );

    let requires = stdout(Command::new("rpm").arg("-qpR").arg(&p.rpm));
    let reqs: BTreeSet<&str> = requires.lines().map(str::trim).collect();
    for r in ["runc", "python3", "systemd"] {
        assert!(reqs.contains(r), "rpm does not require {r}:\n{requires}");
    }
    assert!(
        reqs.iter().any(|r| r.starts_with("libc.so.6")),
        "no ELF dependencies found:\n{requires}"
    );
    let recommends = stdout(Command::new("rpm").args(["-qp", "--recommends"]).arg(&p.rpm));
    assert!(recommends.lines().any(|l| l.trim() == "nodejs"), "{recommends}");
}

/// What `rpm -i` into a scratch root shows that the queries cannot: the payload unpacks with
/// the modes and owners the spec asks for, and the installed binaries run. Scripts are off
/// (they would talk to the host's systemd) and dependencies are not resolvable there.
#[test]
fn rpm_installs_into_a_scratch_root_and_its_binaries_run() {
    require_root();
    let p = packages();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    let out = run(Command::new("rpm")
        .args(["-i", "--nodeps", "--noscripts", "--root"])
        .arg(root)
        .arg(&p.rpm));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));

    let mode = |rel: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(root.join(rel))
            .unwrap_or_else(|e| panic!("{rel} not installed: {e}"))
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/sbin/hearthd"), 0o755);
    assert_eq!(mode("usr/bin/hearth"), 0o755);
    assert_eq!(mode("etc/hearth/controller.toml"), 0o644);
    assert_eq!(mode("var/lib/hearth"), 0o750);
    assert!(!root.join("etc/hearth/admin.key").exists(), "a %ghost file must not be unpacked");
    let conf = std::fs::read_to_string(root.join("etc/hearth/invoker.toml")).unwrap();
    assert!(conf.contains("# memory_budget_mb = 2048"), "{conf}");

    let version = stdout(Command::new(root.join("usr/bin/hearth")).arg("--version"));
    assert!(version.contains(&p.version), "{version}");
    // The packaged daemon joins a cluster by configuration alone: the Kafka bus is built in.
    let hv = stdout(Command::new(root.join("usr/sbin/hearthd")).arg("--version"));
    assert!(hv.contains("with kafka"), "the packaged hearthd lacks the Kafka bus: {hv}");
    let help = stdout(Command::new(root.join("usr/sbin/hearthd")).arg("--help"));
    assert!(help.contains("admin"), "{help}");

    let q = stdout(Command::new("rpm").arg("--root").arg(root).args(["-q", "hearth"]));
    assert!(q.starts_with(&format!("hearth-{}-1", p.version)), "{q}");
    run(Command::new("rpm").arg("--root").arg(root).args([
        "-e",
        "--nodeps",
        "--noscripts",
        "hearth",
    ]));
    assert!(!root.join("usr/sbin/hearthd").exists(), "rpm -e left the binary behind");
}

/// `Documentation=file:///usr/share/doc/hearth/...` in the units must name files the packages
/// install (uncompressed), or `systemctl help hearth-invoker` points nowhere.
#[test]
fn unit_documentation_links_resolve_in_both_packages() {
    require_root();
    let p = packages();
    let units = std::fs::read_dir(support::repo().join("systemd")).unwrap();
    let mut docs = BTreeSet::new();
    for unit in units.flatten() {
        let Ok(text) = std::fs::read_to_string(unit.path()) else { continue };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("Documentation=") {
                for url in rest.split_whitespace() {
                    if let Some(path) = url.strip_prefix("file://") {
                        docs.insert(path.to_owned());
                    }
                }
            }
        }
    }
    assert!(!docs.is_empty(), "no Documentation=file:// in systemd/*");
    let deb = stdout(Command::new("dpkg-deb").arg("-c").arg(&p.deb));
    let rpm = stdout(Command::new("rpm").arg("-qpl").arg(&p.rpm));
    for doc in &docs {
        assert!(deb.lines().any(|l| l.ends_with(&format!(".{doc}"))), "{doc} not in the .deb");
        assert!(rpm.lines().any(|l| l == doc), "{doc} not in the rpm");
    }
}

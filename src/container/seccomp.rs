//! The seccomp profile of every action container: allow by default, deny with EPERM the
//! system calls an action has no business making (mounts, module loading, tracing other
//! processes, namespaces, keyrings, BPF, ...).
//!
//! Default-allow keeps the interpreters working without a hand-maintained allow list; the
//! container also has no capabilities and no_new_privileges, so most of these calls would
//! fail anyway. The list is the second wall, aimed at kernel attack surface that needs no
//! capability (userfaultfd, keyctl, perf_event_open, unprivileged user namespaces).

use serde_json::{json, Value};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// `CLONE_NEWUSER`: a user namespace is the one namespace an unprivileged process may create.
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// Denied with EPERM on every architecture of the profile.
pub const DENIED: &[&str] = &[
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "reboot",
    "swapon",
    "swapoff",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "unshare",
    "setns",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "syslog",
    "nfsservctl",
    "vhangup",
];

/// The `linux.seccomp` object of the OCI config.
///
/// `clone3` answers ENOSYS rather than EPERM: its flags live in memory where seccomp cannot
/// see them, and ENOSYS makes glibc fall back to `clone`, whose flags are checked. The 32-bit
/// architectures are listed so that the same calls made through the 32-bit entry points are
/// filtered too. Names the local libseccomp does not know are skipped by runc.
pub fn profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            { "names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM },
            { "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS },
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{
                    "index": 0,
                    "value": CLONE_NEWUSER,
                    "valueTwo": CLONE_NEWUSER,
                    "op": "SCMP_CMP_MASKED_EQ"
                }]
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_the_dangerous_calls() {
        let p = profile();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
        let names = p["syscalls"][0]["names"].as_array().unwrap();
        for call in ["mount", "ptrace", "bpf", "unshare", "setns", "kexec_load", "init_module"] {
            assert!(names.iter().any(|n| n == call), "{call} not denied");
        }
    }
}

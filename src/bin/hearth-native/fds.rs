//! The launcher's file descriptors: the protocol's (stdin in, fd 3 out) moved out of the exec's
//! reach, and the writes of sentinels, replies and logs.
//!
//! The exec must never read the next protocol message or write a reply: the protocol fds are
//! duplicated close-on-exec, fd 0 becomes /dev/null and fd 3 is closed, as in the Python
//! launcher. fd 1 and fd 2 stay: they are the activation's log streams, which the exec shares.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The end-of-activation marker and its newline (hearth::launcher::protocol::SENTINEL; a test
/// keeps the two equal without linking the library into the launcher).
pub const SENTINEL_LINE: &str = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n";

/// The fd the host reads replies from.
const REPLY_FD: RawFd = 3;

/// The protocol's reply end, private to the launcher (its message end is returned by
/// [`Protocol::take`] for the reader).
#[derive(Debug)]
pub struct Protocol {
    output: File,
}

impl Protocol {
    /// Moves stdin and fd 3 to close-on-exec descriptors of their own, then points fd 0 at
    /// /dev/null and closes fd 3. Returns the message stream and the reply end.
    pub fn take() -> io::Result<(File, Self)> {
        let input = dup_cloexec(0, "stdin (the message pipe)")?;
        let output = dup_cloexec(REPLY_FD, "fd 3 (the reply pipe)")?;
        let null = File::open("/dev/null")
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/null: {e}")))?;
        // SAFETY: dup2 on two open descriptors; fd 0 is not owned by any Rust object here
        // (its old file lives on in `input`).
        if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
            return Err(os_error("cannot point stdin at /dev/null"));
        }
        drop(null);
        // SAFETY: fd 3 was inherited from the host and no Rust object owns it; its file lives
        // on in `output`.
        if unsafe { libc::close(REPLY_FD) } < 0 {
            return Err(os_error("cannot close fd 3"));
        }
        Ok((File::from(input), Self { output: File::from(output) }))
    }

    /// The sentinels on stdout and stderr, then the reply line on fd 3.
    pub fn end_of_activation(&mut self, reply: &[u8]) -> io::Result<()> {
        write_stdout(SENTINEL_LINE.as_bytes())?;
        write_stderr(SENTINEL_LINE.as_bytes())?;
        let mut line = Vec::with_capacity(reply.len() + 1);
        line.extend_from_slice(reply);
        line.push(b'\n');
        self.output
            .write_all(&line)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write the reply to fd 3: {e}")))
    }
}

/// Writes all of `data` to fd 1, unbuffered.
pub fn write_stdout(data: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(data)
        .and_then(|()| out.flush())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write to stdout: {e}")))
}

/// Writes all of `data` to fd 2 (unbuffered in std).
pub fn write_stderr(data: &[u8]) -> io::Result<()> {
    io::stderr()
        .lock()
        .write_all(data)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write to stderr: {e}")))
}

/// A close-on-exec duplicate of `fd`, at 3 or above.
fn dup_cloexec(fd: RawFd, what: &str) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd`; a closed fd fails with EBADF.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(os_error(&format!("cannot duplicate {what}")));
    }
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The last OS error with what failed.
fn os_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

//! Feeding the exec's stdin while relaying its stdout, with poll(2) on both pipes.
//!
//! Poll rather than two blocking steps: an exec that writes much before it reads its stdin (or
//! never reads it) must not deadlock with the launcher. Every complete line of stdout but the
//! last goes to the launcher's stdout (the activation's logs) as it comes; the last line is
//! held back, since it is the result.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ExitStatus};

/// Bytes moved per read or write.
const CHUNK: usize = 65536;

/// Writes `data` to the child's stdin and relays its stdout until the stdout closes, then
/// reaps it. Returns the held-back last line (trimmed of ASCII whitespace) and the status.
pub fn relay(child: &mut Child, data: &[u8]) -> io::Result<(Vec<u8>, ExitStatus)> {
    let mut stdin = child.stdin.take();
    let mut out =
        child.stdout.take().ok_or_else(|| io::Error::other("the exec's stdout was not a pipe"))?;
    let mut pending = data;
    if pending.is_empty() {
        stdin = None;
    } else if let Some(pipe) = &stdin {
        set_nonblocking(pipe.as_raw_fd())?;
    }
    let mut held = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let mut fds = [
            libc::pollfd { fd: out.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd {
                fd: stdin.as_ref().map_or(-1, |p| p.as_raw_fd()),
                events: libc::POLLOUT,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call; a
        // negative fd is ignored by poll.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(io::Error::new(e.kind(), format!("cannot poll the exec's pipes: {e}")));
        }
        if fds[1].revents != 0 {
            if let Some(pipe) = stdin.as_mut() {
                let end = pending.len().min(CHUNK);
                match pipe.write(&pending[..end]) {
                    Ok(written) => pending = &pending[written..],
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    // The exec closed its stdin (or exited): what it did not read is dropped.
                    Err(_) => pending = &[],
                }
                if pending.is_empty() {
                    stdin = None;
                }
            }
        }
        if fds[0].revents != 0 {
            let got = match out.read(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot read the exec's stdout: {e}"),
                    ))
                }
            };
            if got == 0 {
                break;
            }
            held.extend_from_slice(&buf[..got]);
            // Everything up to the last newline that is not the final byte is log.
            let search = &held[..held.len() - 1];
            if let Some(cut) = search.iter().rposition(|b| *b == b'\n') {
                crate::fds::write_stdout(&held[..=cut])?;
                held.drain(..=cut);
            }
        }
    }
    drop(out);
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot wait for the exec: {e}")))?;
    Ok((trim(&held).to_vec(), status))
}

/// Python's `bytes.strip()`: space, \t, \n, \r, \x0b and \x0c off both ends.
pub fn trim(bytes: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !space(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn set_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd the caller owns change only its status flags.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) >= 0
    };
    if ok {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("cannot make the exec's stdin non-blocking: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sh(script: &str) -> Child {
        Command::new("/bin/sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn the_last_line_is_held_back() {
        let mut child = sh("echo one; echo two; printf '{\"a\": 1} \\r\\n'");
        let (last, status) = relay(&mut child, b"").unwrap();
        assert_eq!(last, b"{\"a\": 1}");
        assert!(status.success());
        // As in the action proxy, a trailing empty line is the (empty) last line.
        let mut child = sh("printf '{}\\n\\n'");
        assert_eq!(relay(&mut child, b"").unwrap().0, b"");
    }

    #[test]
    fn a_large_input_does_not_deadlock_with_a_large_output() {
        // The exec writes 1 MB before it reads its 1 MB of stdin: both pipes fill up. (One
        // line, so that nothing is logged onto the test's own stdout.)
        let data = vec![b'x'; 1 << 20];
        let mut child = sh("head -c 1048576 /dev/zero | tr '\\0' y; wc -c >/dev/null; echo '{}'");
        let (last, status) = relay(&mut child, &data).unwrap();
        assert_eq!(last.len(), (1 << 20) + 2);
        assert!(last.ends_with(b"y{}"));
        assert!(status.success());
    }

    #[test]
    fn an_exec_that_never_reads_stdin_is_fine() {
        let data = vec![b'x'; 1 << 20];
        let mut child = sh("exec 0<&-; echo '{\"ok\": true}'; exit 3");
        let (last, status) = relay(&mut child, &data).unwrap();
        assert_eq!(last, b"{\"ok\": true}");
        assert_eq!(status.code(), Some(3));
    }

    #[test]
    fn strip_as_python() {
        assert_eq!(trim(b" \x0b{}\r\n\x0c"), b"{}");
        assert_eq!(trim(b" \n "), b"");
        assert_eq!(trim(b""), b"");
    }
}

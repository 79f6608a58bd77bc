//! `hearth`: the command-line client. Parsing, output and exit codes live in [`hearth::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    hearth::cli::run(std::env::args_os())
}

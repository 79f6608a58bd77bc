//! `hearthd`: hearth's daemons (standalone, controller, invoker) and administration.
//! Everything is in [`hearth::daemon`]; this only maps the outcome to an exit code.

fn main() -> std::process::ExitCode {
    hearth::daemon::main()
}

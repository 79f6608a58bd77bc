//! Man pages and shell completions generated from the clap definitions of hearth's commands.
//!
//! Owns: turning a [`clap::Command`] tree into roff pages (one per visible command and
//! subcommand, `hearth.1`, `hearth-action.1`, `hearth-action-create.1`, ...) and into bash, zsh
//! and fish completion scripts, laid out the way distro packages install them. The packaging
//! (debian/rules, the rpm spec) runs `hearthd generate-assets --man DIR --completions DIR`, which
//! calls these functions, so the pages can never drift from the binaries that ship with them.
//!
//! Must never: know which commands exist (the callers pass them in, so the CLI and the daemon
//! stay the single source of truth), embed a date or anything else that changes between two
//! builds of the same source (packages must build reproducibly), or write outside `dir`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap_complete::Shell;
use clap_mangen::Man;

/// Why generating the assets failed; every variant names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum DocgenError {
    #[error("creating the directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The shells completions are generated for: the three Debian and Fedora ship completion
/// directories for, which cover nearly every operator's interactive shell.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// The manual section every page goes in. Section 1 for both binaries: `hearthd` is a daemon,
/// but its visible surface for a person is `hearthd admin ...`, an interactive command, and one
/// section keeps the page names predictable for the packaging (`man hearthd`).
pub const MAN_SECTION: &str = "1";

/// Writes one man page per visible command and subcommand of each of `commands` into `dir`
/// (created if missing) and returns the paths written, in a stable order.
///
/// Hidden subcommands (such as `hearthd generate-assets`) and clap's implicit `help` get no
/// page: they are not part of what an operator is told to use.
pub fn write_man_pages(
    dir: &Path,
    commands: &[clap::Command],
) -> Result<Vec<PathBuf>, DocgenError> {
    create_dir(dir)?;
    let mut written = Vec::new();
    for cmd in commands {
        // build() settles display names ("hearth-action-create") and propagated arguments;
        // without the help subcommand there is no page for `hearth help`.
        let mut cmd = cmd.clone().disable_help_subcommand(true);
        cmd.build();
        let version = cmd.get_version().map(str::to_owned);
        man_pages_of(&cmd, version.as_deref(), dir, &mut written)?;
    }
    tracing::debug!(dir = %dir.display(), pages = written.len(), "man pages written");
    Ok(written)
}

/// Depth first, the parent's page before its children's, so the returned order is stable.
fn man_pages_of(
    cmd: &clap::Command,
    version: Option<&str>,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), DocgenError> {
    // Subcommands carry no version of their own; the page footer ("source") should still say
    // which release it documents.
    let version = cmd.get_version().or(version).unwrap_or_default();
    let man = Man::new(cmd.clone())
        .section(MAN_SECTION)
        .manual("hearth manual")
        .source(format!("hearth {version}").trim_end().to_owned());
    let path = dir.join(man.get_filename());
    write_file(&path, |w| man.render(w))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages_of(sub, Some(version), dir, written)?;
    }
    Ok(())
}

/// Writes bash, zsh and fish completions for each of `commands` under `dir`, one directory per
/// shell with the file named as that shell looks it up (`bash/hearth`, `zsh/_hearth`,
/// `fish/hearth.fish`), so packaging copies each directory to the shell's vendor directory
/// unchanged. Returns the paths written.
pub fn write_completions(
    dir: &Path,
    commands: &[clap::Command],
) -> Result<Vec<PathBuf>, DocgenError> {
    let mut written = Vec::new();
    for shell in SHELLS {
        let shell_dir = dir.join(shell.to_string());
        create_dir(&shell_dir)?;
        for cmd in commands {
            let mut cmd = cmd.clone();
            let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name()).to_owned();
            let path = shell_dir.join(completion_file_name(shell, &name));
            write_file(&path, |w| {
                clap_complete::generate(shell, &mut cmd, name.as_str(), w);
                Ok(())
            })?;
            written.push(path);
        }
    }
    tracing::debug!(dir = %dir.display(), files = written.len(), "completions written");
    Ok(written)
}

/// The name each shell's completion loader looks for: bash-completion loads `NAME` on demand,
/// zsh's compinit wants `_NAME` on its fpath, fish loads `NAME.fish`.
pub fn completion_file_name(shell: Shell, bin_name: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{bin_name}"),
        Shell::Fish => format!("{bin_name}.fish"),
        _ => bin_name.to_owned(),
    }
}

fn create_dir(path: &Path) -> Result<(), DocgenError> {
    fs::create_dir_all(path)
        .map_err(|source| DocgenError::CreateDir { path: path.to_owned(), source })
}

fn write_file(
    path: &Path,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), DocgenError> {
    let err = |source| DocgenError::Write { path: path.to_owned(), source };
    let file = File::create(path).map_err(err)?;
    let mut w = BufWriter::new(file);
    render(&mut w).map_err(err)?;
    w.flush().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
    }

    fn sample() -> clap::Command {
        clap::Command::new("demo")
            .version("9.8.7")
            .about("A demo tool")
            .arg(
                clap::Arg::new("verbose")
                    .long("verbose")
                    .short('v')
                    .action(clap::ArgAction::SetTrue),
            )
            .subcommand(clap::Command::new("thing").about("Manage things").subcommand(
                clap::Command::new("create").about("Create a thing").arg(clap::Arg::new("name")),
            ))
            .subcommand(clap::Command::new("secret-tool").hide(true))
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand_and_skip_hidden_and_help() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_man_pages(dir.path(), &[sample()]).unwrap();
        assert_eq!(names(&written), ["demo.1", "demo-thing.1", "demo-thing-create.1"]);
        let page = fs::read_to_string(dir.path().join("demo-thing-create.1")).unwrap();
        assert!(page.starts_with(".ie"), "not roff: {page:.40}");
        assert!(page.contains("Create a thing"), "about missing: {page}");
        // The version reaches the subcommand's footer.
        assert!(page.contains("9.8.7"), "version missing: {page}");
        let top = fs::read_to_string(dir.path().join("demo.1")).unwrap();
        assert!(top.contains("\\-\\-verbose"), "option missing: {top}");
        assert!(!dir.path().join("demo-secret-tool.1").exists());
        assert!(!dir.path().join("demo-help.1").exists());
    }

    #[test]
    fn man_pages_are_reproducible() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write_man_pages(a.path(), &[sample()]).unwrap();
        write_man_pages(b.path(), &[sample()]).unwrap();
        for name in ["demo.1", "demo-thing.1", "demo-thing-create.1"] {
            assert_eq!(
                fs::read(a.path().join(name)).unwrap(),
                fs::read(b.path().join(name)).unwrap(),
                "{name} differs between two runs"
            );
        }
    }

    #[test]
    fn completions_are_laid_out_per_shell() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_completions(dir.path(), &[sample()]).unwrap();
        let rel: Vec<_> =
            written.iter().map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf()).collect();
        assert_eq!(
            rel,
            [
                PathBuf::from("bash/demo"),
                PathBuf::from("zsh/_demo"),
                PathBuf::from("fish/demo.fish")
            ]
        );
        let bash = fs::read_to_string(dir.path().join("bash/demo")).unwrap();
        assert!(bash.contains("complete -F"), "bash script: {bash:.200}");
        assert!(bash.contains("thing"), "subcommand missing from bash completion");
        let zsh = fs::read_to_string(dir.path().join("zsh/_demo")).unwrap();
        assert!(zsh.starts_with("#compdef demo"), "zsh script: {zsh:.80}");
        let fish = fs::read_to_string(dir.path().join("fish/demo.fish")).unwrap();
        assert!(fish.contains("complete -c demo"), "fish script: {fish:.200}");
    }

    #[test]
    fn the_real_cli_gets_pages_and_completions() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(&dir.path().join("man"), &[crate::cli::command()]).unwrap();
        let pages = names(&pages);
        assert!(pages.contains(&"hearth.1".to_owned()), "{pages:?}");
        assert!(pages.contains(&"hearth-action-invoke.1".to_owned()), "{pages:?}");
        for p in ["create", "update", "get", "delete", "list", "bind"] {
            let page = format!("hearth-package-{p}.1");
            assert!(pages.contains(&page), "{page} missing: {pages:?}");
        }
        let comps = write_completions(&dir.path().join("comp"), &[crate::cli::command()]).unwrap();
        assert_eq!(comps.len(), 3);
        let bash = fs::read_to_string(dir.path().join("comp/bash/hearth")).unwrap();
        assert!(bash.contains("invoke"), "bash completion lacks `action invoke`");
        assert!(
            bash.contains("package") && bash.contains("bind"),
            "bash completion lacks `package bind`"
        );
    }

    #[test]
    fn an_unwritable_target_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let err = write_man_pages(&blocker.join("man"), &[sample()]).unwrap_err();
        assert!(matches!(err, DocgenError::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains(&blocker.display().to_string()), "{err}");
    }
}

//! The `omium` binary: the command line of `omium_cli` (`src/lib.rs`).

fn main() -> std::process::ExitCode {
    omium_cli::main_from(std::env::args_os().collect())
}
